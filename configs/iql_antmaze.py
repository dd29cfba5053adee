"""IQL on AntMaze, the IQL paper's settings (expectile 0.9, beta 10, reward - 1).

    python train_offline.py --config=configs/iql_antmaze.py --dataset=local/d4rl-antmaze/umaze-v1
    python train_offline.py --config=configs/iql_antmaze.py:smoke ...   # tiny, for tests
"""

import ml_collections

from configs import iql_mujoco


def add_antmaze_fields(config: ml_collections.ConfigDict) -> None:
    """What AntMaze changes for IQL and IDQL alike."""
    # A higher expectile: sparse goal rewards need V near the best dataset action's value.
    config.expectile = 0.9
    # Rewards 0/1 become -1/0, as the original.
    config.reward_transform = "antmaze"
    # AntMaze is evaluated less often, over more episodes (success is 0/1 per episode).
    config.eval_interval = 100_000
    config.eval_episodes = 100


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    config = iql_mujoco.base_config()
    iql_mujoco.add_awr_actor(config)
    add_antmaze_fields(config)
    # Greedier policy extraction.
    config.beta = 10.0
    # Total gradient steps.
    config.max_steps = 1_000_000
    return iql_mujoco.finish(config, variant)
