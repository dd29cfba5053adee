"""IQL offline -> online fine-tuning on MuJoCo locomotion (train_finetune.py).

    python train_finetune.py --config=configs/iql_mujoco_finetune.py --dataset=local/hopper/medium-v0
    python train_finetune.py --config=configs/iql_mujoco_finetune.py:smoke ...   # tiny, for tests

The offline fields are those of iql_mujoco.py; the online recipe is the original's AntMaze one
(one gradient step per env step, replay buffer seeded with the whole dataset, no warm-up, the
same reward transform online), applied to locomotion.
"""

import ml_collections
from ml_collections import config_dict

from configs import iql_mujoco


def add_finetune_fields(config: ml_collections.ConfigDict) -> None:
    # Gradient steps on the offline data before any interaction.
    config.pretrain_steps = 1_000_000
    # Environment steps of the online phase (per seed).
    config.online_steps = 1_000_000
    # The actor's cosine schedule (if on) spans both phases.
    config.max_steps = config.get_ref("pretrain_steps") + config.get_ref("online_steps")
    # Online the actor keeps a constant learning rate, as the original fine-tuning.
    config.cosine_decay = False
    # Replay buffer rows (per seed); it starts with the whole offline dataset.
    config.buffer_size = 2_000_000
    # Gradient steps per environment step.
    config.utd = 1
    # Sample half of each batch from the offline data and half from online transitions
    # (the IDQL / RLPD recipe) instead of one buffer seeded with the offline data.
    config.mix_offline = False
    # Evaluate every this many offline steps (None: eval_interval, which then counts env steps online).
    config.pretrain_eval_interval = config_dict.placeholder(int)
    # Rows per online gradient step (None: batch_size).
    config.online_batch_size = config_dict.placeholder(int)
    # Env steps before gradient updates resume online (0 = no warm-up, as the original).
    config.start_training = 0
    # In the online phase checkpoint_interval counts environment steps.
    config.checkpoint_interval = 100_000
    # Std multiplier of the acting policy online (1 = sample the full Gaussian).
    config.online_temperature = 1.0


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    config = iql_mujoco.get_config()
    add_finetune_fields(config)
    if variant == "smoke":
        iql_mujoco.apply_smoke(config)
        config.pretrain_steps = 100
        config.online_steps = 100
        config.buffer_size = 5000
        config.checkpoint_interval = 50
        config.max_steps = config.get_ref("pretrain_steps") + config.get_ref("online_steps")
        config.steps_per_call = 50
        config.log_interval = 50
        config.eval_interval = 100
    elif variant:
        raise ValueError(f"unknown config variant {variant!r}; the only one is 'smoke'")
    return config
