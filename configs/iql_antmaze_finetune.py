"""IQL offline -> online fine-tuning on AntMaze, the IQL paper's settings (train_finetune.py).

    python train_finetune.py --config=configs/iql_antmaze_finetune.py --dataset=D4RL/antmaze/umaze-v1
    python train_finetune.py --config=configs/iql_antmaze_finetune.py:smoke ...   # tiny, for tests

Expectile 0.9, beta 10, rewards - 1 (offline and online), constant actor learning rate,
1M offline + 1M online steps, a 2M replay buffer seeded with the dataset, one gradient step
per env step, no warm-up.
"""

import ml_collections

from configs import iql_antmaze, iql_mujoco, iql_mujoco_finetune


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    config = iql_mujoco.base_config()
    iql_mujoco.add_awr_actor(config)
    iql_antmaze.add_antmaze_fields(config)
    # Greedier policy extraction.
    config.beta = 10.0
    iql_mujoco_finetune.add_finetune_fields(config)
    return iql_mujoco.finish(config, variant)
