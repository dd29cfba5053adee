"""IDQL offline -> online fine-tuning (train_finetune.py), as the IDQL paper: online only the
critic trains, and batches mix offline and online data 50/50.

    python train_finetune.py --config=configs/idql_mujoco_finetune.py --dataset=local/hopper/medium-v0
"""

import ml_collections

from configs import idql_mujoco, iql_mujoco_finetune


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    config = idql_mujoco.get_config(variant)
    iql_mujoco_finetune.add_finetune_fields(config)
    config.mix_offline = True
    if variant == "smoke":
        config.pretrain_steps = 100
        config.online_steps = 100
        config.buffer_size = 5000
        config.max_steps = config.get_ref("pretrain_steps") + config.get_ref("online_steps")
    return config
