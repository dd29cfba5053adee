"""A tiny 1-D reaching task for fast online tests: move x towards 0.7 within 30 steps.

The offline data the tests build only ever pushes left (actions in [-1, 0]), so offline
training cannot discover that pushing right is what pays; online interaction can.
"""

import gymnasium as gym
import numpy as np

TARGET, STEPS = 0.7, 30


class Reach(gym.Env):
    observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, render_mode=None):
        self.render_mode = render_mode

    def render(self):
        """A 32 x 64 frame: the target column green, the position column white."""
        if self.render_mode != "rgb_array":
            return None
        frame = np.zeros((32, 64, 3), np.uint8)
        frame[:, int((TARGET + 1) / 2 * 63), 1] = 255
        frame[:, int((self.x + 1) / 2 * 63)] = 255
        return frame

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.x = float(self.np_random.uniform(-0.2, 0.2))
        return np.array([self.x], np.float32), {}

    def step(self, action):
        self.x = float(np.clip(self.x + 0.1 * float(np.asarray(action).reshape(-1)[0]), -1.0, 1.0))
        reward = 1.0 - abs(self.x - TARGET)
        return np.array([self.x], np.float32), reward, False, False, {}


class WideReach(Reach):
    """Reach with action bounds [-3, 3] (as e.g. InvertedPendulum's): the same dynamics per unit
    of the range, and the raw action it last received kept in `last_action`."""

    action_space = gym.spaces.Box(-3.0, 3.0, (1,), np.float32)

    def step(self, action):
        self.last_action = float(np.asarray(action).reshape(-1)[0])
        return super().step(np.asarray(action) / 3.0)


def register_wide() -> str:
    if "ToyReachWide-v0" not in gym.registry:
        gym.register("ToyReachWide-v0", entry_point="toy_env:WideReach", max_episode_steps=STEPS)
    return "ToyReachWide-v0"


def register() -> str:
    if "ToyReach-v0" not in gym.registry:
        gym.register("ToyReach-v0", entry_point=Reach, max_episode_steps=STEPS)
    return "ToyReach-v0"


def left_only_dataset(path, episodes: int = 60, seed: int = 0) -> None:
    """An npz dataset of a behavior that pushes left: uniform actions in [-1, 0]."""
    rng = np.random.default_rng(seed)
    cols = {k: [] for k in ("observations", "actions", "rewards", "terminals", "timeouts", "next_observations")}
    env = Reach()
    for e in range(episodes):
        obs, _ = env.reset(seed=seed * 1000 + e)
        for t in range(STEPS):
            action = rng.uniform(-1.0, 0.0, (1,)).astype(np.float32)
            next_obs, reward, _, _, _ = env.step(action)
            for k, v in zip(cols, (obs, action, reward, False, t == STEPS - 1, next_obs)):
                cols[k].append(v)
            obs = next_obs
    np.savez(path, **{k: np.asarray(v, np.float32) for k, v in cols.items()})
