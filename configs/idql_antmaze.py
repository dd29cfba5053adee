"""IDQL on AntMaze, the IDQL paper's settings (expectile 0.9, rewards - 1).

    python train_offline.py --config=configs/idql_antmaze.py --dataset=D4RL/antmaze/umaze-v1
    python train_offline.py --config=configs/idql_antmaze.py:smoke ...   # tiny, for tests
"""

import ml_collections

from configs import idql_mujoco, iql_antmaze


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    config = iql_antmaze.get_config()
    idql_mujoco.add_idql_fields(config)
    if variant == "smoke":
        idql_mujoco.apply_idql_smoke(config)
    elif variant:
        raise ValueError(f"unknown config variant {variant!r}; the only one is 'smoke'")
    return config
