"""IQL on Franka Kitchen and Adroit, the IQL paper's settings (beta 0.5, actor dropout 0.1).

    python train_offline.py --config=configs/iql_kitchen.py --dataset=D4RL/kitchen/mixed-v2
    python train_offline.py --config=configs/iql_kitchen.py --dataset=D4RL/pen/human-v2
    python train_offline.py --config=configs/iql_kitchen.py:smoke ...   # tiny, for tests
"""

import ml_collections

from configs import iql_mujoco


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    config = iql_mujoco.get_config()
    # Milder policy extraction and actor dropout, as the paper's Kitchen/Adroit runs.
    config.beta = 0.5
    config.dropout_rate = 0.1
    # Rewards as recorded.
    config.reward_transform = "none"
    return iql_mujoco.finish(config, variant)
