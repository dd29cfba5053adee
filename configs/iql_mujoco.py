"""IQL on MuJoCo locomotion (Hopper, HalfCheetah, Walker2d), the IQL paper's settings.

    python train_offline.py --config=configs/iql_mujoco.py --dataset=mujoco/hopper/medium-v0
    python train_offline.py --config=configs/iql_mujoco.py:smoke ...   # tiny, for tests

Every field can be overridden on the command line, e.g. `--config.beta=0` (behavior cloning).
The AntMaze and Kitchen/Adroit configs start from this one and change what the paper changes.
"""

import ml_collections
from ml_collections import config_dict


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    # Which agent class trains (the explicit table ALGORITHMS in harness/experiment.py).
    config.algo = "iql"

    # --- Agent (passed to IQLLearner.create, which reads the fields of learner.DEFAULTS) ---
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
    # Dropout in the actor's hidden layers (0 = none; 0.1 for Kitchen/Adroit).
    config.dropout_rate = 0.0
    # tau of the expectile value loss: 0.5 = mean (SARSA-like), -> 1 = max over dataset actions.
    config.expectile = 0.7
    # Inverse temperature of the AWR weights exp(beta * A); 0 = behavior cloning.
    config.beta = 3.0
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
    # Total gradient steps.
    config.max_steps = 1_000_000
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

    if variant == "smoke":
        apply_smoke(config)
    elif variant:
        raise ValueError(f"unknown config variant {variant!r}; the only one is 'smoke'")
    return config


def apply_smoke(config: ml_collections.ConfigDict) -> None:
    """A tiny, fast run for tests and for trying the pipeline end to end."""
    config.hidden_dims = (32, 32)
    config.batch_size = 32
    config.max_steps = 200
    config.steps_per_call = 50
    config.log_interval = 50
    config.eval_interval = 100
    config.eval_episodes = 2
    config.checkpoint_interval = 100
