"""Policy evaluation in Gymnasium environments, and the D4RL normalised score.

`evaluate` runs `num_episodes` episodes side by side in a `gymnasium.vector.SyncVectorEnv`, so
the policy is called once per environment step for all episodes together (one batched jit call
instead of one per episode). Episode i is reset with seed `seed + i`, so a result is a pure
function of the policy and the seed.
"""

import importlib
import importlib.metadata
import importlib.util
import os
import re
from typing import Any, Callable, Optional

import gymnasium as gym
import mujoco
import numpy as np


def normalized_score(returns, ref_min_score: Optional[float], ref_max_score: Optional[float]):
    """D4RL normalised score x100: 100 * (R - random) / (expert - random); None without refs."""
    if ref_min_score is None or ref_max_score is None:
        return None
    return 100.0 * (np.asarray(returns) - ref_min_score) / (ref_max_score - ref_min_score)


def flatten_observations(space: gym.Space, observations: Any) -> np.ndarray:
    """(T, ...) observations (a dict of arrays for Dict spaces) -> (T, obs_dim) float32.

    The one flattening of the project: datasets (`dataset.py`), evaluation and online acting
    (`flat_observations`) all use it. Dict spaces (Gymnasium-Robotics' mazes: achieved_goal,
    desired_goal, observation) are concatenated in the space's key order, as gymnasium's
    `FlattenObservation`.
    """
    if isinstance(space, gym.spaces.Dict):
        parts = [flatten_observations(space[k], observations[k]) for k in space.spaces]
        return np.concatenate(parts, axis=-1)
    if isinstance(space, gym.spaces.Box):
        x = np.asarray(observations, np.float32)
        return x.reshape(len(x), -1)
    raise ValueError(f"unsupported observation space {space}; only Box and Dict of Box are")


def flat_observations(env: gym.Env) -> gym.Env:
    """`env` observing flat float32 vectors (`flatten_observations`); Box envs are left alone.
    Nested Dict spaces (Franka Kitchen's achieved_goal / desired_goal, one entry per task) are
    flattened depth first, each level in its space's (sorted) key order."""
    space = env.observation_space
    if not isinstance(space, gym.spaces.Dict):
        return env
    flat = gym.spaces.Box(-np.inf, np.inf, (gym.spaces.flatdim(space),), np.float32)
    one_row = lambda x: {k: one_row(v) for k, v in x.items()} if isinstance(x, dict) else np.asarray(x)[None]  # noqa: E731
    return gym.wrappers.TransformObservation(env, lambda obs: flatten_observations(space, one_row(obs))[0], flat)


def register_robotics(env_id: Optional[str] = None) -> None:
    """Make Gymnasium-Robotics' ids (AntMaze_*, PointMaze_*, FrankaKitchen-v1, AdroitHand*) known to
    gym.make (when `env_id` is not registered yet, or always without one), and apply the Kitchen
    workaround below when `env_id` is a Kitchen env."""
    if (env_id is None or env_id not in gym.registry) and importlib.util.find_spec("gymnasium_robotics"):
        gym.register_envs(importlib.import_module("gymnasium_robotics"))
    if env_id is not None and env_id.startswith("FrankaKitchen"):
        patch_kitchen_joint_reads()


# Upstream bug (gymnasium-robotics 1.4.2, gymnasium_robotics/utils/mujoco_utils.py, get_joint_qpos
# and get_joint_qvel): `assert joint_type in (mujoco.mjtJoint.mjJNT_HINGE, mujoco.mjtJoint.mjJNT_SLIDE)`
# is False for the NumPy int32 that `model.jnt_type` holds (NumPy 2, mujoco 3.x and 4.x), although
# `==` is True, so FrankaKitchen-v1 raises AssertionError when it is made. Only the Kitchen reaches
# these two readers (through robot_get_obs); they are replaced by equivalents that compare
# int(joint_type), and only while the bug is there.
_QPOS_WIDTH = {0: 7, 1: 4}  # mjJNT_FREE, mjJNT_BALL; hinge and slide joints: 1
_QVEL_WIDTH = {0: 6, 1: 3}


def _joint_reader(field: str, address: str, widths: dict) -> Callable:
    def read(model, data, name):
        joint = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, name)
        if joint < 0:
            raise ValueError(f"joint {name!r} is not part of the model")
        start = int(getattr(model, address)[joint])
        return getattr(data, field)[start:start + widths.get(int(model.jnt_type[joint]), 1)].copy()

    return read


def patch_kitchen_joint_reads() -> bool:
    """Apply the workaround above if gymnasium-robotics has the bug; True when it was applied."""
    from gymnasium_robotics.utils import mujoco_utils  # only here: a locomotion run needs no robotics package

    hinge = mujoco.mjtJoint.mjJNT_HINGE
    if np.int32(int(hinge)) in (hinge, mujoco.mjtJoint.mjJNT_SLIDE):
        return False  # fixed upstream (or an older NumPy): nothing to do
    if getattr(mujoco_utils.get_joint_qpos, "__module__", None) == __name__:
        return True  # applied before
    mujoco_utils.get_joint_qpos = _joint_reader("qpos", "jnt_qposadr", _QPOS_WIDTH)
    mujoco_utils.get_joint_qvel = _joint_reader("qvel", "jnt_dofadr", _QVEL_WIDTH)
    return True


# ----------------------------------------------------------------------------------------------
# D4RL's evaluation protocols on Gymnasium-Robotics' Kitchen and Adroit envs (docs/datasets.md).
# ----------------------------------------------------------------------------------------------

KITCHEN_HORIZON = 280  # d4rl/kitchen/__init__.py: max_episode_steps=280


def make_kitchen(tasks, **kwargs) -> gym.Env:
    """FrankaKitchen-v1 scored as D4RL's Kitchen (kitchen_envs.py: REMOVE_TASKS_WHEN_COMPLETE,
    TERMINATE_ON_TASK_COMPLETE): a task pays 1 when it is first completed and is then removed, the
    episode ends when all are done or after 280 steps, so the return is the number of `tasks`
    completed and D4RL's references (0, 4) make the normalised score 25 per task. (Minari's
    D4RL/kitchen sets were recorded with both flags off, their reward the tasks solved at each
    step, and name no evaluation env of their own.)"""
    register_robotics("FrankaKitchen-v1")
    kwargs.setdefault("max_episode_steps", KITCHEN_HORIZON)
    return gym.make("FrankaKitchen-v1", tasks_to_complete=list(tasks), remove_task_when_completed=True,
                    terminate_on_tasks_completed=True, **kwargs)


ADROIT_HORIZONS = {"Pen": 100, "Door": 200, "Hammer": 200, "Relocate": 200}  # d4rl hand_manipulation_suite/__init__.py
PEN_DROP_HEIGHT = 0.075  # d4rl pen_v0.py:85-87: the pen below this height ends the episode


def adroit_task(env_id: str) -> Optional[str]:
    """'AdroitHandDoor-v1' -> 'Door'; None for other ids."""
    match = re.fullmatch(r"AdroitHand(Pen|Door|Hammer|Relocate)-v\d+", env_id)
    return match.group(1) if match else None


def package_version(name: str) -> str:
    """An installed package's version, or 'not installed'."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def robotics_version() -> str:
    return package_version("gymnasium-robotics")


def adroit_reward_flipped(env_id: str) -> bool:
    """Whether this env's "reach the object" reward term has the opposite sign of D4RL's: from
    gymnasium-robotics 1.2.1 (commit f0fd852), Door, Hammer and Relocate -v1 add 0.1 x the
    palm-object distance where D4RL subtracts it (door_v0.py:52, hammer_v0.py, relocate_v0.py);
    gymnasium-robotics PR #220 restores D4RL's sign in its -v2 envs."""
    version = robotics_version()
    if adroit_task(env_id) in (None, "Pen") or not env_id.endswith("-v1") or version == "not installed":
        return False
    return tuple(int(x) for x in re.findall(r"\d+", version)[:3]) >= (1, 2, 1)


class D4RLHandTask(gym.Wrapper):
    """An AdroitHand*-v1 env scored as D4RL's hand envs, so that D4RL's reference returns apply:
    Door, Hammer and Relocate take D4RL's sign of the palm-object term back (each step's reward
    minus 0.2 x that distance, where `adroit_reward_flipped`); Pen ends its episode when the pen
    falls below 7.5 cm, as D4RL's pen (gymnasium-robotics 1.2.1+ keeps the -5 penalty but goes on).
    The time limit (D4RL's 100 steps for Pen, 200 for the rest) is set where the env is made."""

    def __init__(self, env: gym.Env, task: str, flipped: bool):
        super().__init__(env)
        self.task, self.flipped = task, flipped

    def _reach_distance(self) -> float:
        u = self.env.unwrapped
        if self.task == "Door":  # door_v0.py: palm to handle
            palm, target = u.data.site_xpos[u.grasp_site_id], u.data.site_xpos[u.handle_site_id]
        else:  # hammer_v0.py, relocate_v0.py: palm to the object's body
            palm, target = u.data.site_xpos[u.S_grasp_site_id], u.data.xpos[u.obj_body_id]
        return float(np.linalg.norm(palm - target))

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        if self.flipped:
            reward = float(reward) - 0.2 * self._reach_distance()
        if self.task == "Pen":
            u = self.env.unwrapped
            terminated = terminated or bool(u.data.xpos[u.obj_body_id][2] < PEN_DROP_HEIGHT)
        return obs, reward, terminated, truncated, info


def make_adroit(env_id: str, **kwargs) -> gym.Env:
    """An AdroitHand* env with D4RL's time limit and scoring (`D4RLHandTask`)."""
    task = adroit_task(env_id)
    register_robotics(env_id)
    kwargs.setdefault("max_episode_steps", ADROIT_HORIZONS[task])
    return D4RLHandTask(gym.make(env_id, **kwargs), task, adroit_reward_flipped(env_id))


def protocol_note(env_id: Optional[str]) -> Optional[str]:
    """One line on how a Kitchen or Adroit env is scored here, to print at the start of a run."""
    if env_id is None:
        return None
    if env_id.startswith("FrankaKitchen"):
        return (f"evaluating in {env_id} as D4RL's Kitchen: each task counts once and is removed, the episode "
                f"ends when all are done or at {KITCHEN_HORIZON} steps; return = tasks completed (x25 with "
                "references 0 / 4)")
    task = adroit_task(env_id)
    if task is None:
        return None
    note = f"evaluating in {env_id} as D4RL's {task.lower()}: {ADROIT_HORIZONS[task]}-step episodes"
    if task == "Pen":
        note += ", ending when the pen drops below 7.5 cm (D4RL's rule; gymnasium-robotics' Pen goes on)"
    if adroit_reward_flipped(env_id):
        note += (f"; gymnasium-robotics {robotics_version()} adds 0.1 x the palm-object distance where D4RL "
                 "subtracts it, so each evaluation reward is corrected by -0.2 x that distance")
    return note


def is_unit_box(low, high) -> bool:
    """Whether action bounds are already [-1, 1], the range the policies here act in."""
    return bool(np.allclose(low, -1.0) and np.allclose(high, 1.0))


def acting_in_unit_box(env: gym.Env) -> gym.Env:
    """`env` taking actions in [-1, 1]: wrapped in `RescaleAction` when its Box bounds differ."""
    space = env.action_space
    if isinstance(space, gym.spaces.Box) and not is_unit_box(space.low, space.high):
        env = gym.wrappers.RescaleAction(env, -1.0, 1.0)
    return env


def make_env(env_id: str, **kwargs) -> gym.Env:
    """`gym.make(env_id)` observing flat vectors (`flat_observations`) and acting in [-1, 1]
    (`acting_in_unit_box`); `RescaleAction` records itself in the env spec, so a Minari dataset
    recorded in this env recovers the same wrapper. Adroit envs are scored as D4RL's (`make_adroit`)."""
    if adroit_task(env_id):
        return acting_in_unit_box(make_adroit(env_id, **kwargs))
    register_robotics(env_id)
    return acting_in_unit_box(flat_observations(gym.make(env_id, **kwargs)))


def action_bounds(env_id: str, **kwargs) -> tuple[np.ndarray, np.ndarray]:
    """The action bounds of `gym.make(env_id)` itself (before any rescaling)."""
    register_robotics(env_id)
    env = gym.make(env_id, **kwargs)
    try:
        if not isinstance(env.action_space, gym.spaces.Box):
            raise ValueError(f"{env_id} has a {type(env.action_space).__name__} action space; IQL needs a Box")
        return env.action_space.low, env.action_space.high
    finally:
        env.close()


def check_env(env: gym.Env, obs_dim: int, action_dim: int, name: str = "the evaluation env") -> None:
    """Raise a clear ValueError when an env cannot run a policy trained on this data."""
    obs_space, act_space = env.observation_space, env.action_space
    if not isinstance(act_space, gym.spaces.Box):
        raise ValueError(f"{name} has a {type(act_space).__name__} action space; IQL needs a Box")
    if obs_space.shape is None or int(np.prod(obs_space.shape)) != obs_dim:
        raise ValueError(f"{name} observes shape {obs_space.shape}, but the dataset's observations have {obs_dim} features")
    if int(np.prod(act_space.shape)) != action_dim:
        raise ValueError(f"{name} takes actions of shape {act_space.shape}, but the dataset's have {action_dim}")
    if not is_unit_box(act_space.low, act_space.high):
        raise ValueError(
            f"{name} has action bounds [{act_space.low.min()}, {act_space.high.max()}], but the policy "
            "acts in [-1, 1]: make it with evaluation.make_env (or wrap it in "
            "gymnasium.wrappers.RescaleAction(env, -1, 1)) and map the dataset's actions with "
            "dataset.scale_actions"
        )


def evaluate(
    policy_fn: Callable[[np.ndarray], np.ndarray],
    make_env: Callable[[], gym.Env],
    num_episodes: int,
    seed: int | list[int],
) -> dict:
    """Mean undiscounted return of `num_episodes` episodes, run in parallel, the success rate
    for envs that report `info['success']` (the mazes), the flip rate for envs that report
    `info['flipped']` (D4RL's AntMaze: the ant's torso turned upside down), and the tasks
    completed for envs that report `info['step_task_completions']` (Franka Kitchen).

    Args:
      policy_fn: (num_episodes, obs_dim) float32 observations -> (num_episodes, act_dim) actions.
      make_env: builds one evaluation env (with its time limit).
      num_episodes: number of episodes, one per vectorized env copy.
      seed: episode i is reset with seed + i, or with seed[i] when a list is given.

    Returns:
      {'return': mean, 'return_std': std, 'length': mean episode length, 'returns': per episode,
       'successes': per episode 0/1 (success at any step) or None, 'success': their mean or None,
       'flips': per episode 0/1 (flipped at any step) or None, 'flip_rate': their mean or None,
       'tasks': per episode the number of tasks completed or None, 'tasks_completed': their mean
       or None}.
    """
    envs = gym.vector.SyncVectorEnv([make_env] * num_episodes)
    try:
        obs, _ = envs.reset(seed=list(seed) if isinstance(seed, (list, tuple)) else seed)
        returns = np.zeros(num_episodes)
        lengths = np.zeros(num_episodes, np.int64)
        running = np.ones(num_episodes, bool)
        successes, reports_success = np.zeros(num_episodes, bool), False
        flips, reports_flips = np.zeros(num_episodes, bool), False
        tasks, reports_tasks = np.zeros(num_episodes), False
        while running.any():
            actions = np.asarray(policy_fn(obs.reshape(num_episodes, -1).astype(np.float32)))
            obs, rewards, terminated, truncated, infos = envs.step(actions.reshape(envs.action_space.shape))
            # Envs that already finished auto-reset; their later rewards are ignored.
            returns += np.where(running, rewards, 0.0)
            if "success" in infos:
                reports_success = True
                successes |= running & np.asarray(infos["success"], bool) & np.asarray(infos["_success"], bool)
            if "flipped" in infos:
                reports_flips = True
                flips |= running & np.asarray(infos["flipped"], bool) & np.asarray(infos["_flipped"], bool)
            if "step_task_completions" in infos:
                reports_tasks = True
                done_now = [len(x) if ok else 0 for x, ok in zip(infos["step_task_completions"],
                                                                 infos["_step_task_completions"])]
                tasks += np.where(running, done_now, 0)
            lengths += running
            running &= ~(terminated | truncated)
    finally:
        envs.close()
    return {
        "return": float(returns.mean()),
        "return_std": float(returns.std()),
        "length": float(lengths.mean()),
        "returns": returns,
        "successes": successes.astype(np.float64) if reports_success else None,
        "success": float(successes.mean()) if reports_success else None,
        "flips": flips.astype(np.float64) if reports_flips else None,
        "flip_rate": float(flips.mean()) if reports_flips else None,
        "tasks": tasks if reports_tasks else None,
        "tasks_completed": float(tasks.mean()) if reports_tasks else None,
    }


def record_video(policy_fn: Callable[[np.ndarray], np.ndarray], make_env: Callable[..., gym.Env], seed: int,
                 path: str) -> dict:
    """Render one episode (reset with `seed`) to an MP4 file at `path`.

    `make_env(render_mode="rgb_array")` must build a rendering env: MuJoCo envs render
    off-screen with MUJOCO_GL=egl (or osmesa). Writing needs imageio with its ffmpeg plugin.
    Returns {'return', 'length', 'path'}.
    """
    try:
        import imageio.v2 as imageio
        import imageio_ffmpeg  # noqa: F401  (the MP4 writer)
    except ImportError as e:
        raise RuntimeError(f"--video needs imageio with ffmpeg: pip install 'imageio[ffmpeg]' ({e})") from e
    env = make_env(render_mode="rgb_array")
    try:
        obs, _ = env.reset(seed=seed)
        frames, total, done = [env.render()], 0.0, False
        if frames[0] is None:
            raise RuntimeError("the evaluation env rendered no frame; it needs render_mode='rgb_array' support")
        while not done:
            action = np.asarray(policy_fn(np.asarray(obs, np.float32).reshape(1, -1)))[0]
            obs, reward, terminated, truncated, _ = env.step(action.reshape(env.action_space.shape))
            total += float(reward)
            frames.append(env.render())
            done = terminated or truncated
        fps = env.metadata.get("render_fps") or 30
    finally:
        env.close()
    tmp = f"{path}.tmp.mp4"  # written whole, then renamed: no half-written video under the final name
    with imageio.get_writer(tmp, fps=fps, macro_block_size=1) as writer:
        for frame in frames:
            writer.append_data(np.asarray(frame, np.uint8))
    os.replace(tmp, path)
    return {"return": total, "length": len(frames) - 1, "path": path}
