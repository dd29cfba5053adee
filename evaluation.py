"""Policy evaluation in Gymnasium environments, and the D4RL normalised score.

`evaluate` runs `num_episodes` episodes side by side in a `gymnasium.vector.SyncVectorEnv`, so
the policy is called once per environment step for all episodes together (one batched jit call
instead of one per episode). Episode i is reset with seed `seed + i`, so a result is a pure
function of the policy and the seed.
"""

import importlib
import os
from typing import Any, Callable, Optional

import gymnasium as gym
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
    """`env` observing flat float32 vectors (`flatten_observations`); Box envs are left alone."""
    space = env.observation_space
    if not isinstance(space, gym.spaces.Dict):
        return env
    flat = gym.spaces.Box(-np.inf, np.inf, (gym.spaces.flatdim(space),), np.float32)
    return gym.wrappers.TransformObservation(env, lambda obs: flatten_observations(
        space, {k: np.asarray(v)[None] for k, v in obs.items()})[0], flat)


def register_robotics(env_id: Optional[str] = None) -> None:
    """Make Gymnasium-Robotics' ids (AntMaze_*, PointMaze_*, ...) known to gym.make (when
    `env_id` is not registered yet, or always without one)."""
    if (env_id is None or env_id not in gym.registry) and importlib.util.find_spec("gymnasium_robotics"):
        gym.register_envs(importlib.import_module("gymnasium_robotics"))


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
    recorded in this env recovers the same wrapper."""
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
    for envs that report `info['success']` (the mazes), and the flip rate for envs that report
    `info['flipped']` (D4RL's AntMaze: the ant's torso turned upside down).

    Args:
      policy_fn: (num_episodes, obs_dim) float32 observations -> (num_episodes, act_dim) actions.
      make_env: builds one evaluation env (with its time limit).
      num_episodes: number of episodes, one per vectorized env copy.
      seed: episode i is reset with seed + i, or with seed[i] when a list is given.

    Returns:
      {'return': mean, 'return_std': std, 'length': mean episode length, 'returns': per episode,
       'successes': per episode 0/1 (success at any step) or None, 'success': their mean or None,
       'flips': per episode 0/1 (flipped at any step) or None, 'flip_rate': their mean or None}.
    """
    envs = gym.vector.SyncVectorEnv([make_env] * num_episodes)
    try:
        obs, _ = envs.reset(seed=list(seed) if isinstance(seed, (list, tuple)) else seed)
        returns = np.zeros(num_episodes)
        lengths = np.zeros(num_episodes, np.int64)
        running = np.ones(num_episodes, bool)
        successes, reports_success = np.zeros(num_episodes, bool), False
        flips, reports_flips = np.zeros(num_episodes, bool), False
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
