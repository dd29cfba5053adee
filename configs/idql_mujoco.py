"""IDQL on MuJoCo locomotion, as its authors ran it (IDQL-A: argmax over 64 samples).

    python train_offline.py --config=configs/idql_mujoco.py --dataset=local/hopper/medium-replay-v0
    python train_offline.py --config=configs/idql_mujoco.py:smoke ...   # tiny, for tests

The critic, data and loop fields are IQL's (iql_mujoco.base_config); the diffusion actor's
fields below take the place of the AWR actor's. The budget is the authors' offline launcher's
(philippe-eecs/IDQL, launcher/examples/train_ddpm_iql_offline.py:17-47): 3M joint steps at
batch 512, the actor's rate cosine-decayed over the 3M, evaluation every 250k steps with 50
episodes.
"""

import ml_collections

from configs import iql_mujoco


def add_idql_fields(config: ml_collections.ConfigDict) -> None:
    """IDQL's value objective, diffusion actor and acting fields, on a base config."""
    config.algo = "idql"
    # V's statistic of Q: 'expectile' (IQL's; tau = config.expectile), 'quantile' (the
    # tau-quantile) or 'exponential' (a soft maximum, sharper with larger exp_scale).
    config.value_objective = "expectile"
    config.exp_scale = 1.0
    # Diffusion steps T and the beta schedule: 'vp' (variance preserving), 'cosine' or 'linear'.
    config.diffusion_steps = 5
    config.beta_schedule = "vp"
    # Noise model: LN-ResNet width, residual blocks, dropout, and Fourier time-feature size
    # (the time features then pass an MLP of width 2 * time_dim).
    config.diffusion_hidden_dim = 256
    config.diffusion_blocks = 3
    config.diffusion_dropout = 0.1
    config.time_dim = 128
    # AdamW's weight decay on the noise model (optax's default, which the original used), and the
    # steps of the actor's cosine decay (0: max_steps).
    config.actor_weight_decay = 1e-4
    config.decay_steps = 0
    # Polyak rate of the EMA copy of the noise model that samples actions.
    config.ema_rate = 0.001
    # Behavior samples per state when acting, and how one is chosen: 'argmax' of min Q
    # (IDQL-A) or 'resample' with the critic-implied weights.
    config.num_samples = 64
    config.selection = "argmax"
    # Reverse-process noise scale when evaluating (IDQL samples with 1).
    config.eval_temperature = 1.0


def add_idql_budget(config: ml_collections.ConfigDict) -> None:
    """The authors' offline budget: 3M steps of actor, value and critic together, all on
    batches of 512, evaluated every 250k steps with 50 episodes."""
    config.max_steps = 3_000_000
    config.batch_size = 512
    config.eval_interval = 250_000
    config.eval_episodes = 50


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    config = iql_mujoco.base_config()
    add_idql_fields(config)
    add_idql_budget(config)
    return iql_mujoco.finish(config, variant)
