"""IQL on Adroit (pen, door, hammer, relocate), the IQL paper's settings: those of Kitchen (beta
0.5, actor dropout 0.1, expectile 0.7), as the original's README runs pen-human with
configs/kitchen_config.py.

    python train_offline.py --config=configs/iql_adroit.py --dataset=D4RL/pen/human-v2
    python train_offline.py --config=configs/iql_adroit.py --dataset=data/pen-human-v1.hdf5   # D4RL's file
    python train_offline.py --config=configs/iql_adroit.py:smoke ...   # tiny, for tests

Evaluated in Gymnasium-Robotics' AdroitHand*-v1 scored as D4RL's hand envs, with D4RL's
reference returns (docs/datasets.md says where the envs differ and what is corrected).
"""

import ml_collections

from configs import iql_kitchen, iql_mujoco


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    config = iql_mujoco.get_config()
    iql_kitchen.add_kitchen_fields(config)
    return iql_mujoco.finish(config, variant)
