"""IQL on Franka Kitchen, the IQL paper's settings (beta 0.5, actor dropout 0.1; the original's
configs/kitchen_config.py, which its README also uses for Adroit: configs/iql_adroit.py).

    python train_offline.py --config=configs/iql_kitchen.py --dataset=D4RL/kitchen/mixed-v2
    python train_offline.py --config=configs/iql_kitchen.py:smoke ...   # tiny, for tests

Minari's D4RL/kitchen sets evaluate in FrankaKitchen-v1 scored as D4RL's Kitchen: the return is
the number of the four tasks completed, the normalised score 25 per task (docs/datasets.md).
"""

import ml_collections

from configs import iql_mujoco


def add_kitchen_fields(config: ml_collections.ConfigDict) -> None:
    """What Kitchen and Adroit change: milder policy extraction, actor dropout, raw rewards."""
    # Inverse temperature of the AWR weights (the original's temperature 0.5).
    config.beta = 0.5
    # Dropout in the actor's hidden layers.
    config.dropout_rate = 0.1
    # Rewards as recorded (the original rescales only locomotion and AntMaze rewards).
    config.reward_transform = "none"


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    config = iql_mujoco.get_config()
    add_kitchen_fields(config)
    return iql_mujoco.finish(config, variant)
