"""IQL on AntMaze, the IQL paper's settings (expectile 0.9, beta 10, reward - 1).

    python train_offline.py --config=configs/iql_antmaze.py --dataset=D4RL/antmaze/umaze-v1
    python train_offline.py --config=configs/iql_antmaze.py:smoke ...   # tiny, for tests
"""

import ml_collections

from configs import iql_mujoco


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    config = iql_mujoco.get_config()
    # A higher expectile: sparse goal rewards need V near the best dataset action's value.
    config.expectile = 0.9
    # Greedier policy extraction.
    config.beta = 10.0
    # Rewards 0/1 become -1/0, as the original.
    config.reward_transform = "antmaze"
    # AntMaze is evaluated less often, over more episodes (success is 0/1 per episode).
    config.eval_interval = 100_000
    config.eval_episodes = 100
    if variant == "smoke":
        iql_mujoco.apply_smoke(config)
    elif variant:
        raise ValueError(f"unknown config variant {variant!r}; the only one is 'smoke'")
    return config
