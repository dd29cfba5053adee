"""IDQL offline -> online fine-tuning (train_finetune.py), as its authors ran it: online only the
critic trains, and batches mix offline and online data 50/50.

    python train_finetune.py --config=configs/idql_mujoco_finetune.py --dataset=local/hopper/medium-v0

The authors' fine-tuning launcher (philippe-eecs/IDQL, launcher/examples/
train_ddpm_iql_finetune.py:15-55, and examples/states/train_diffusion_offline.py:90-126):
3M offline steps at batch 512 with the actor's rate cosine-decayed over 2M (so it is 0 for
the last 1M), then 1M env steps acting with the argmax of 128 candidates; no updates for the
first 5000 env steps, then one critic update per env step on 128 online + 128 offline rows.
"""

import ml_collections

from configs import idql_mujoco, iql_mujoco_finetune


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    config = idql_mujoco.get_config(variant)
    iql_mujoco_finetune.add_finetune_fields(config)
    config.mix_offline = True
    config.pretrain_steps = 3_000_000
    config.max_steps = config.get_ref("pretrain_steps") + config.get_ref("online_steps")
    config.cosine_decay = True
    config.decay_steps = 2_000_000
    config.num_samples = 128
    config.start_training = 5_000
    config.online_batch_size = 256
    config.pretrain_eval_interval = 1_000_000  # the authors evaluate every 1M offline steps, every 25k online
    config.eval_interval = 25_000
    config.eval_episodes = 25
    if variant == "smoke":
        config.pretrain_steps = 100
        config.online_steps = 100
        config.buffer_size = 5000
        config.decay_steps = 0
        config.num_samples = 8
        config.start_training = 0
        config.online_batch_size = config.get_ref("batch_size")
        config.pretrain_eval_interval = config.get_ref("eval_interval")
        config.eval_interval = 100
        config.eval_episodes = 2
        config.max_steps = config.get_ref("pretrain_steps") + config.get_ref("online_steps")
    return config
