"""IQL on Franka Kitchen and Adroit, the IQL paper's settings (beta 0.5, actor dropout 0.1).

    python train_offline.py --config=configs/iql_kitchen.py --dataset=D4RL/kitchen/mixed-v2
    python train_offline.py --config=configs/iql_kitchen.py --dataset=D4RL/pen/human-v2
    python train_offline.py --config=configs/iql_kitchen.py:smoke ...   # tiny, for tests
"""

import ml_collections

from configs import iql_mujoco


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    config = iql_mujoco.get_config()
    # A low inverse temperature: these datasets are narrow, so stay close to behavior cloning.
    config.beta = 0.5
    # Dropout in the actor regularises it on the small human datasets.
    config.dropout_rate = 0.1
    # Rewards are used as they are.
    config.reward_transform = "none"
    if variant == "smoke":
        iql_mujoco.apply_smoke(config)
    elif variant:
        raise ValueError(f"unknown config variant {variant!r}; the only one is 'smoke'")
    return config
