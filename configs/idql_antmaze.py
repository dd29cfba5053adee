"""IDQL on AntMaze, the IDQL paper's settings (expectile 0.9, rewards - 1).

    python train_offline.py --config=configs/idql_antmaze.py --dataset=D4RL/antmaze/umaze-v1
    python train_offline.py --config=configs/idql_antmaze.py:smoke ...   # tiny, for tests
"""

import ml_collections

from configs import idql_mujoco, iql_antmaze, iql_mujoco


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    config = iql_antmaze.get_config()
    idql_mujoco.add_idql_fields(config)
    if variant == "smoke":
        iql_mujoco.apply_smoke(config)
        config.diffusion_hidden_dim = 32
        config.diffusion_blocks = 1
        config.time_dim = 8
        config.num_samples = 8
    elif variant:
        raise ValueError(f"unknown config variant {variant!r}; the only one is 'smoke'")
    return config
