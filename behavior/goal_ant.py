"""A goal-reaching Ant: the body of Gymnasium-Robotics' AntMaze, told where to go.

D4RL's AntMaze datasets were recorded by a goal-reaching Ant policy that a waypoint planner
steers through the maze. This env trains such a policy with the project's SAC
(`python -m tools.train_behavior --env=behavior.goal_ant:GoalReachingAnt-v0`):

- the body and physics are Ant-v4's (`gymnasium/envs/mujoco/assets/ant.xml`), which AntMaze-v4
  loads into its maze, on an open floor;
- observation (29) = AntMaze's `observation` (qpos[2:] and qvel, 27 numbers, with the torso's
  planar velocity turned into its heading frame) followed by the goal relative to the ant,
  `goal - xy` in the heading frame, shortened to at most `MAX_GOAL_DISTANCE` (so the same
  policy reads a waypoint in the maze, `policy_input`);
- each episode (500 steps) draws a goal 1 to 6 m away in a random direction and a new one
  whenever the ant comes within 0.5 m (AntMaze's cells are 4 m wide, so the next waypoint is
  at most about 6 m away);
- reward = progress towards the goal in m/s + 0.5 while healthy - 0.05 |a|^2. Ant-v4's weights
  (1 and 0.5) made standing still the best the policy found in 500k steps (0.12 m/s): with goals
  in every direction, walking costs more control than it earns at first. The episode terminates
  when the torso leaves Ant-v4's healthy height range (0.2, 1.0) or turns upside down (Ant-v4's
  height range lets a flipped ant lie on its back; in a maze that is where it ended).
"""

import gymnasium as gym
import numpy as np

MAX_GOAL_DISTANCE = 6.0
GOAL_RADIUS = 0.5
HEALTHY_REWARD = 0.5
CTRL_COST_WEIGHT = 0.05
ENV_ID = "behavior.goal_ant:GoalReachingAnt-v0"


def policy_input(observation: np.ndarray, achieved: np.ndarray, target: np.ndarray,
                 max_distance: float = MAX_GOAL_DISTANCE) -> np.ndarray:
    """(n, 27) body observations, (n, 2) ant positions and (n, 2) targets -> (n, 29) policy
    inputs: the body followed by target - position in the torso's heading frame (rotated by
    minus its yaw, so "ahead" means the same legs whatever way the ant faces; a first run with
    the world-frame vector stood still after 270k steps), shortened to `max_distance`."""
    observation = np.asarray(observation, np.float64)
    delta = np.asarray(target, np.float64) - np.asarray(achieved, np.float64)
    w, x, y, z = (observation[:, i] for i in range(1, 5))  # qpos[3:7], the torso quaternion
    yaw = np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))
    cos, sin = np.cos(yaw), np.sin(yaw)

    def heading(v):  # world-frame (n, 2) vectors in the torso's heading frame
        return np.stack([cos * v[:, 0] + sin * v[:, 1], -sin * v[:, 0] + cos * v[:, 1]], axis=-1)

    delta = heading(delta)
    norm = np.linalg.norm(delta, axis=-1, keepdims=True)
    delta = delta * np.minimum(1.0, max_distance / np.maximum(norm, 1e-8))
    body = observation.copy()
    body[:, 13:15] = heading(observation[:, 13:15])  # qvel[0:2], the torso's planar velocity
    return np.concatenate([body, delta], axis=-1).astype(np.float32)



def upside_down(qpos: np.ndarray) -> np.ndarray:
    """Whether the torso's up axis points down, from qpos (..., >= 7), or observations that start
    with qpos (x, y included): the z of the body's z axis, 1 - 2 (qx^2 + qy^2), below 0."""
    qx, qy = qpos[..., 4], qpos[..., 5]  # of the torso quaternion (w, x, y, z) at qpos[3:7]
    return 1 - 2 * (qx * qx + qy * qy) < 0

class GoalReachingAnt(gym.Env):
    """Ant-v4 on an open floor with goals drawn around it (module docstring)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(self, min_distance: float = 1.0, max_distance: float = MAX_GOAL_DISTANCE,
                 healthy_reward: float = HEALTHY_REWARD, ctrl_cost_weight: float = CTRL_COST_WEIGHT,
                 render_mode: str | None = None):
        # AntMaze-v4's AntEnv arguments: positions observed (the first two are x, y).
        self.ant = gym.make("Ant-v4", exclude_current_positions_from_observation=False,
                            render_mode=render_mode).unwrapped
        self.min_distance, self.max_distance = min_distance, max_distance
        self.healthy_reward, self.ctrl_cost_weight = healthy_reward, ctrl_cost_weight
        self.render_mode = render_mode
        self.action_space = self.ant.action_space
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (29,), np.float64)
        self.goal = np.zeros(2)

    def _new_goal(self, xy: np.ndarray) -> np.ndarray:
        radius = self.np_random.uniform(self.min_distance, self.max_distance)
        angle = self.np_random.uniform(0.0, 2 * np.pi)
        return xy + radius * np.array([np.cos(angle), np.sin(angle)])

    def _observe(self, ant_obs: np.ndarray) -> np.ndarray:
        return policy_input(ant_obs[None, 2:], ant_obs[None, :2], self.goal[None])[0].astype(np.float64)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        ant_obs, info = self.ant.reset(seed=int(self.np_random.integers(2**31 - 1)))
        self.goal = self._new_goal(ant_obs[:2])
        return self._observe(ant_obs), info

    def step(self, action):
        xy = self.ant.data.qpos[:2].copy()
        before = np.linalg.norm(self.goal - xy)
        ant_obs, _, terminated, truncated, info = self.ant.step(action)
        after = np.linalg.norm(self.goal - ant_obs[:2])
        action = np.asarray(action)
        reward = ((before - after) / self.ant.dt + self.healthy_reward * float(self.ant.is_healthy)
                  - self.ctrl_cost_weight * float(np.sum(action**2)))
        flipped = bool(upside_down(ant_obs))  # Ant-v4 calls an ant on its back healthy
        terminated = bool(terminated) or flipped
        info = {**info, "goal_distance": after, "reached": after <= GOAL_RADIUS, "flipped": flipped}
        if after <= GOAL_RADIUS:
            self.goal = self._new_goal(ant_obs[:2])
        return self._observe(ant_obs), float(reward), bool(terminated), bool(truncated), info

    def render(self):
        return self.ant.render()

    def close(self):
        self.ant.close()


gym.register(id="GoalReachingAnt-v0", entry_point=GoalReachingAnt, max_episode_steps=500)
