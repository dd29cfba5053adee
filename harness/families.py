"""The benchmark families (docs/datasets.md, "Benchmark families"): which env a D4RL file
evaluates in, how a D4RL AntMaze file was read, D4RL's Kitchen files refused, and Minari's
Kitchen and Adroit sets evaluated by D4RL's protocol (evaluation.make_kitchen / make_adroit)
with D4RL's reference returns.
"""

import os
import re
from typing import Callable, Optional

import numpy as np

import dataset as dataset_lib
import evaluation
from harness.cli import UserError

# The Gymnasium env (and gym.make kwargs) to evaluate D4RL files in, by the name's first word.
# Locomotion: D4RL recorded on the v2/v3 MuJoCo envs; Gymnasium's -v4 keeps those models, -v5
# changed some (e.g. Walker2d's foot friction). D4RL's Ant observations include the 84 contact
# forces. Adroit: Gymnasium-Robotics' AdroitHand*-v1 port D4RL's hand envs with the same
# observation layout (docs/datasets.md says where their rewards differ).
D4RL_ENVS = {
    "hopper": ("Hopper-v4", {}),
    "halfcheetah": ("HalfCheetah-v4", {}),
    "walker2d": ("Walker2d-v4", {}),
    "ant": ("Ant-v4", {"use_contact_forces": True}),
    "pen": ("AdroitHandPen-v1", {}),
    "door": ("AdroitHandDoor-v1", {}),
    "hammer": ("AdroitHandHammer-v1", {}),
    "relocate": ("AdroitHandRelocate-v1", {}),
}
# D4RL's AntMaze files (antmaze-<maze>[-<kind>]-v<k>.hdf5) evaluate in D4RL's AntMaze as rebuilt
# here (behavior/d4rl_antmaze.py, which registers these ids): the same ant, maze and task.
D4RL_ANTMAZE_ENVS = {"umaze": "D4RLAntMaze_UMaze-v0", "medium": "D4RLAntMaze_Medium-v0",
                     "large": "D4RLAntMaze_Large-v0"}
D4RL_ANTMAZE_NAME = re.compile(r"antmaze-(umaze|medium|large)(?:-(diverse|play))?-v(\d+)")
# An ant moves well under 1 m in one 0.1 s step: a larger jump of x-y between a row and its
# next observation is an episode boundary that the file's timeouts miss (D4RL issue #77, v0).
ANTMAZE_JUMP = 1.0




def d4rl_family(path: str) -> str:
    """The D4RL family a file's name starts with: 'hopper-medium-v2.hdf5' -> 'hopper'."""
    return os.path.basename(path).split("-")[0].split("_")[0].lower()


def d4rl_env(path: str) -> Optional[tuple[str, dict]]:
    """(Gymnasium env id, gym.make kwargs) for a file named after a D4RL env, e.g.
    'hopper-medium-v2.hdf5' -> ('Hopper-v4', {}), 'antmaze-umaze-diverse-v0.hdf5' ->
    ('D4RLAntMaze_UMaze-v0', {}); None for other names."""
    match = D4RL_ANTMAZE_NAME.match(os.path.basename(path).lower())
    if match:
        return D4RL_ANTMAZE_ENVS[match.group(1)], {}
    return D4RL_ENVS.get(d4rl_family(path))


def check_not_d4rl_kitchen(path: str, obs_dim: Optional[int] = None) -> None:
    """D4RL's own Kitchen files (by name, or by their 60-number observations) cannot be
    evaluated here: refuse them with what to use instead."""
    name = os.path.basename(path).lower()
    if name.startswith(("kitchen", "mini_kitchen")) or obs_dim == 60:
        raise UserError(
            f"{os.path.basename(path)} is a D4RL Kitchen file: its 60-number observations (robot and object "
            "positions and a goal vector, d4rl's kitchen_multitask_v0.py) are not what Gymnasium-Robotics' "
            "FrankaKitchen-v1 observes (59 robot and object positions and velocities plus the tasks' goals), so "
            "no env here can evaluate a policy trained on them. Use Minari's D4RL/kitchen sets, the same "
            "demonstrations recorded in FrankaKitchen-v1: --dataset=D4RL/kitchen/complete-v2 (or partial-v2, "
            "mixed-v2) with --config=configs/iql_kitchen.py"
        )


def file_obs_dim(path: str) -> Optional[int]:
    """The observation width of a dataset file, or None if it cannot be read."""
    try:
        obs = dataset_lib.read_arrays(path).get("observations")
    except dataset_lib.DatasetError:
        return None
    return None if obs is None or np.ndim(obs) != 2 else int(np.shape(obs)[1])


def antmaze_reading(path: str, dataset, dropped_timeouts: int) -> str:
    """What a D4RL AntMaze file's rows mean and how they were read (printed, and kept in
    config.json). Both versions are read as d4rl.qlearning_dataset, which the original trained
    on: timeout rows dropped, each row's next observation the next row, masks = 1 - terminals,
    whose 1s are the goal rows (relabel_antmaze_rewards.py writes terminals = rewards)."""
    match = D4RL_ANTMAZE_NAME.match(os.path.basename(path).lower())
    version = f"v{match.group(3)}" if match else "of unknown version"
    obs, next_obs = np.asarray(dataset.observations[:, :2]), np.asarray(dataset.next_observations[:, :2])
    jumps = int((np.linalg.norm(next_obs - obs, axis=-1) > ANTMAZE_JUMP).sum())
    goal_rows = int((np.asarray(dataset.masks) == 0).sum())
    text = (f"D4RL AntMaze file {version}: read as d4rl.qlearning_dataset (the original's): "
            f"{dropped_timeouts} timeout row(s) dropped, {goal_rows} goal row(s) end bootstrapping (mask 0, "
            f"terminals = rewards), episodes go on past the goal")
    if jumps:
        why = ("v0's timeouts miss episode ends (D4RL issue #77), kept as the original trained on them"
               if version == "v0" else "an episode end the timeouts miss")
        text += f"; {jumps} transition(s) jump more than {ANTMAZE_JUMP:g} m in x-y ({why})"
    return text


# Why a D4RL file evaluates in the env it is given, by the file's family.
_LOCOMOTION = "D4RL recorded the MuJoCo models that Gymnasium's -v4 envs keep"
_ADROIT = "Gymnasium-Robotics' port of D4RL's hand env, with the same observations"
WHY_ENV = {"hopper": _LOCOMOTION, "halfcheetah": _LOCOMOTION, "walker2d": _LOCOMOTION, "ant": _LOCOMOTION,
           "antmaze": "D4RL's AntMaze ant, maze and task, rebuilt here in behavior/d4rl_antmaze.py",
           "pen": _ADROIT, "door": _ADROIT, "hammer": _ADROIT, "relocate": _ADROIT}


def benchmark_family(env_id: Optional[str]) -> Optional[str]:
    """'kitchen' for FrankaKitchen, 'pen' / 'door' / 'hammer' / 'relocate' for AdroitHand*: the
    Minari families evaluated by D4RL's protocol with D4RL's references; None for others."""
    if env_id is None:
        return None
    if env_id.startswith("FrankaKitchen"):
        return "kitchen"
    task = evaluation.adroit_task(env_id)
    return task.lower() if task else None


def minari_protocol(info) -> Optional[tuple[Callable, float, float, Optional[str]]]:
    """For a Minari Kitchen or Adroit set: (the evaluation env's constructor, D4RL's reference
    returns, a line saying so when the dataset's metadata carries other ones); None otherwise."""
    family = benchmark_family(info.env_id)
    if family is None:
        return None

    def make_env(**kwargs):
        if family == "kitchen":  # the tasks are the data's: the keys of its achieved_goal
            env = evaluation.make_kitchen(info.observation_space["achieved_goal"].keys(), **kwargs)
        else:
            env = evaluation.make_adroit(info.env_id, **kwargs)
        return evaluation.acting_in_unit_box(evaluation.flat_observations(env))

    ref_min, ref_max = dataset_lib.D4RL_REFERENCE_SCORES[family]
    recorded = (info.ref_min_score, info.ref_max_score)
    note = None
    if recorded != (None, None) and recorded != (ref_min, ref_max):
        note = (f"normalised score with D4RL's reference returns {ref_min} / {ref_max} "
                f"(the dataset's metadata says {recorded[0]} / {recorded[1]})")
    return make_env, ref_min, ref_max, note
