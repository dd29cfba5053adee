"""IQL on MuJoCo locomotion (Hopper, HalfCheetah, Walker2d), the IQL paper's settings.

    python train_offline.py --config=configs/iql_mujoco.py --dataset=mujoco/hopper/medium-v0
    python train_offline.py --config=configs/iql_mujoco.py:smoke ...   # tiny, for tests

Every field can be overridden on the command line, e.g. `--config.beta=0` (behavior cloning).
The AntMaze and Kitchen/Adroit configs start from this one and change what the paper changes.
"""

import ml_collections
from ml_collections import config_dict


def base_config() -> ml_collections.ConfigDict:
    """The fields every IQL and IDQL run has: the critic and value nets, the data, the loop.
    The actor's fields and the training budget are added by each config."""
    config = ml_collections.ConfigDict()
    # Which agent class trains (the explicit table ALGORITHMS in harness/algorithms.py).
    config.algo = "iql"

    # --- Agent (IQLLearner.create / IDQLLearner.create read the fields of their DEFAULTS) ---
    # Hidden layer widths of actor, critics and value net.
    config.hidden_dims = (256, 256)
    # Number of critic heads; the value and actor use their minimum.
    config.num_qs = 2
    # Adam learning rates.
    config.actor_lr = 3e-4
    config.critic_lr = 3e-4
    config.value_lr = 3e-4
    # Cosine decay of the actor learning rate to 0 at max_steps (the original's offline setting).
    config.cosine_decay = True
    # tau of the expectile value loss: 0.5 = mean (SARSA-like), -> 1 = max over dataset actions.
    config.expectile = 0.7
    # Discount factor.
    config.discount = 0.99
    # Polyak rate of the target critic.
    config.target_tau = 0.005

    # --- Data ---
    # Reward preprocessing: 'locomotion' (x1000 / return range), 'antmaze' (r - 1) or 'none'.
    config.reward_transform = "locomotion"
    # Random / expert returns for the normalised score; only needed for .hdf5/.npz files whose
    # name does not start with a D4RL env (Minari datasets carry their own).
    config.ref_min_score = config_dict.placeholder(float)
    config.ref_max_score = config_dict.placeholder(float)

    # --- Training loop ---
    # Transitions per gradient step.
    config.batch_size = 256
    # Gradient steps per compiled call (lax.scan); log/eval intervals must be multiples of it.
    config.steps_per_call = 1000
    # Write training scalars (means over the last call) every this many steps.
    config.log_interval = 1000
    # Evaluate every this many steps (and at the end), with this many episodes.
    config.eval_interval = 5000
    config.eval_episodes = 10
    # Time limit of an evaluation episode in env steps (0 = the env's own, e.g. AntMaze's 700).
    config.eval_max_episode_steps = 0
    # Save the whole training state every this many steps (and at the end, and on
    # SIGTERM/SIGINT), keeping the newest few; rerunning the command resumes from it.
    config.checkpoint_interval = 100_000
    config.keep_checkpoints = 3
    # Also log to TensorBoard (tb/ in the work directory).
    config.tensorboard = True
    return config


def add_awr_actor(config: ml_collections.ConfigDict) -> None:
    """IQL's Gaussian actor, extracted by advantage-weighted regression."""
    # Inverse temperature of the AWR weights exp(beta * A); 0 = behavior cloning.
    config.beta = 3.0
    # Dropout in the actor's hidden layers (0 = none; 0.1 for Kitchen/Adroit).
    config.dropout_rate = 0.0


def finish(config: ml_collections.ConfigDict, variant: str) -> ml_collections.ConfigDict:
    """The variant, applied once and last: '' (the config as it is) or 'smoke'."""
    if variant == "smoke":
        apply_smoke(config)
    elif variant:
        raise ValueError(f"unknown config variant {variant!r}; the only one is 'smoke'")
    return config


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    config = base_config()
    add_awr_actor(config)
    # Total gradient steps.
    config.max_steps = 1_000_000
    return finish(config, variant)


def apply_smoke(config: ml_collections.ConfigDict) -> None:
    """A tiny, fast run for tests and for trying the pipeline end to end (any config: the
    diffusion actor's and fine-tuning's fields are made tiny too when the config has them)."""
    config.hidden_dims = (32, 32)
    config.batch_size = 32
    config.steps_per_call = 50
    config.log_interval = 50
    config.eval_interval = 100
    config.eval_episodes = 2
    config.checkpoint_interval = 100
    if "max_steps" in config:
        config.max_steps = 200
    if "diffusion_hidden_dim" in config:
        config.diffusion_hidden_dim = 32
        config.diffusion_blocks = 1
        config.time_dim = 8
        config.num_samples = 8
        config.decay_steps = 0
    if "pretrain_steps" in config:
        config.pretrain_steps = 100
        config.online_steps = 100
        config.buffer_size = 5000
        config.checkpoint_interval = 50
        config.start_training = 0
        config.online_batch_size = None
        config.pretrain_eval_interval = None
