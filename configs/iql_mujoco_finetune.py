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
    """The online phase's fields. There is no `max_steps`: the run's step counter ends at
    pretrain_steps + online_steps (one step per env step online, each with `utd` gradient
    steps), which the actor's schedule spans (train_finetune.py)."""
    # Offline gradient steps, then environment steps per seed.
    config.pretrain_steps = 1_000_000
    config.online_steps = 1_000_000
    # Constant actor learning rate in both phases (the original's fine-tuning setting).
    config.cosine_decay = False
    # Replay buffer rows (seeded with the whole dataset).
    config.buffer_size = 2_000_000
    # Gradient steps per environment step.
    config.utd = 1
    # Batches half from the dataset, half from online data (the IDQL / RLPD recipe) instead of
    # the buffer seeded with the dataset.
    config.mix_offline = False
    # Evaluation interval during the offline phase (None: eval_interval).
    config.pretrain_eval_interval = config_dict.placeholder(int)
    # Batch size online (None: batch_size).
    config.online_batch_size = config_dict.placeholder(int)
    # Env steps before the first online update.
    config.start_training = 0
    config.checkpoint_interval = 100_000
    # Noise scale of the online policy (1: the full policy std).
    config.online_temperature = 1.0


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    config = iql_mujoco.base_config()
    iql_mujoco.add_awr_actor(config)
    add_finetune_fields(config)
    return iql_mujoco.finish(config, variant)
