"""IDQL on AntMaze, the IDQL paper's settings (expectile 0.9, rewards - 1).

    python train_offline.py --config=configs/idql_antmaze.py --dataset=local/d4rl-antmaze/umaze-v1
    python train_offline.py --config=configs/idql_antmaze.py:smoke ...   # tiny, for tests
"""

import ml_collections

from configs import idql_mujoco, iql_antmaze, iql_mujoco


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    config = iql_mujoco.base_config()
    iql_antmaze.add_antmaze_fields(config)
    idql_mujoco.add_idql_fields(config)
    idql_mujoco.add_idql_budget(config)
    return iql_mujoco.finish(config, variant)
