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

from configs import idql_mujoco, iql_mujoco, iql_mujoco_finetune


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    config = iql_mujoco.base_config()
    idql_mujoco.add_idql_fields(config)
    iql_mujoco_finetune.add_finetune_fields(config)
    # Both phases on batches of 512 (the offline launcher's), online halves of 128 + 128.
    config.batch_size = 512
    config.mix_offline = True
    config.online_batch_size = 256
    # 3M offline steps; the actor's rate cosine-decayed over 2M (0 for the last 1M offline).
    config.pretrain_steps = 3_000_000
    config.cosine_decay = True
    config.decay_steps = 2_000_000
    # Acting online with the argmax of 128 candidates, after 5000 env steps without updates.
    config.num_samples = 128
    config.start_training = 5_000
    # The authors evaluate every 1M offline steps and every 25k online, with 25 episodes.
    config.pretrain_eval_interval = 1_000_000
    config.eval_interval = 25_000
    config.eval_episodes = 25
    return iql_mujoco.finish(config, variant)
