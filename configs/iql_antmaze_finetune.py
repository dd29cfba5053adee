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
    config = iql_antmaze.get_config()
    iql_mujoco_finetune.add_finetune_fields(config)
    if variant == "smoke":
        iql_mujoco.apply_smoke(config)
        config.pretrain_steps = 100
        config.online_steps = 100
        config.buffer_size = 5000
        config.max_steps = config.get_ref("pretrain_steps") + config.get_ref("online_steps")
    elif variant:
        raise ValueError(f"unknown config variant {variant!r}; the only one is 'smoke'")
    return config
