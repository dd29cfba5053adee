"""D4RL's AntMaze task (Fu et al. 2020), rebuilt on today's MuJoCo: the task the IQL paper reports.

Gymnasium-Robotics' AntMaze (and so Minari's D4RL/antmaze sets) uses Gymnasium's ant, which is
not D4RL's. This module edits Gymnasium's own ant model at load to D4RL's parameters and adds
D4RL's maze, start, goal, success and horizon rules (facts from Farama-Foundation/D4RL,
d4rl/locomotion/: assets/ant.xml, ant.py, maze_env.py, goal_reaching_env.py, wrappers.py,
__init__.py):

- physics: `timestep 0.02`, RK4, frame skip 5 = 0.1 s per env step; motors `ctrlrange -30 30`,
  gear 1, behind D4RL's NormalizedBoxEnv, so an action in [-1, 1] is 30 x a Nm; geom defaults
  `solref .02 1`, `solimp .8 .8 .01` (Gymnasium's: 0.01 s, gear 150, MuJoCo's contact defaults);
- maze: D4RL's maps (umaze U_MAZE, medium BIG_MAZE, large HARDEST_MAZE), 4 m cells, walls
  2 m high, coordinates shifted so that the start cell's centre is the origin;
- observation: qpos[:15] + qvel[:14] = 29 numbers (x, y, the torso, the joints; no goal);
- evaluation (`D4RLAntMaze_<UMaze|Medium|Large>-v0`): start at the origin with U(-0.1, 0.1)
  on every qpos and N(0, 0.1) on every qvel; the goal drawn in the goal cell by D4RL's rule
  (`goal_noise`); reward 1 and the episode ends within 0.5 m of the goal; time limits 700 /
  1000 / 1000 steps; return = success, so reference scores (0, 1) make D4RL's score.

The data builder (`behavior/d4rl_datasets.py`) steps the same env with `evaluation=False`:
continuing, any start, rewards about a fixed `reward_goal` (D4RL's relabelling).
`D4RLGoalAnt-v0` is the open-floor task that trains the goal-reaching controller.
"""

import os
import xml.etree.ElementTree as ET

import gymnasium as gym
import mujoco
import numpy as np

from behavior import goal_ant  # the heading-frame transform of the Gymnasium-ant controller

TIMESTEP, FRAME_SKIP = 0.02, 5  # D4RL assets/ant.xml `<option timestep="0.02" integrator="RK4"/>`, ant.py:53
MAX_TORQUE = 30.0  # assets/ant.xml motors: ctrlrange -30 30, gear 1
SOLREF, SOLIMP = "0.02 1", "0.8 0.8 0.01"  # assets/ant.xml:9 geom defaults
SCALING, WALL_HEIGHT = 4.0, 0.5  # __init__.py maze_size_scaling=4.0; maze_env.py maze_height=0.5
SUCCESS_RADIUS = 0.5  # goal_reaching_env.py:42-47
HORIZONS = {"umaze": 700, "medium": 1000, "large": 1000}  # __init__.py max_episode_steps
ENV_IDS = {"umaze": "D4RLAntMaze_UMaze-v0", "medium": "D4RLAntMaze_Medium-v0", "large": "D4RLAntMaze_Large-v0"}

R, G = "r", "g"
# maze_env.py's maps. The data maps mark the goal cells the data controller is sent to
# (U_MAZE, BIG_MAZE, HARDEST_MAZE); the evaluation maps (*_TEST) mark the one goal cell.
DATA_MAPS = {
    "umaze": [[1, 1, 1, 1, 1],
              [1, R, 0, 0, 1],
              [1, 1, 1, 0, 1],
              [1, G, 0, 0, 1],
              [1, 1, 1, 1, 1]],
    "medium": [[1, 1, 1, 1, 1, 1, 1, 1],
               [1, R, 0, 1, 1, 0, 0, 1],
               [1, 0, 0, 1, 0, 0, G, 1],
               [1, 1, 0, 0, 0, 1, 1, 1],
               [1, 0, 0, 1, 0, 0, 0, 1],
               [1, G, 1, 0, 0, 1, 0, 1],
               [1, 0, 0, 0, 1, G, 0, 1],
               [1, 1, 1, 1, 1, 1, 1, 1]],
    "large": [[1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
              [1, R, 0, 0, 0, 1, G, 0, 0, 0, 0, 1],
              [1, 0, 1, 1, 0, 1, 0, 1, 0, 1, 0, 1],
              [1, 0, 0, 0, 0, G, 0, 1, 0, 0, G, 1],
              [1, 0, 1, 1, 1, 1, 0, 1, 1, 1, 0, 1],
              [1, 0, G, 1, 0, 1, 0, 0, 0, 0, 0, 1],
              [1, 1, 0, 1, 0, 1, 0, 1, 0, 1, 1, 1],
              [1, 0, 0, 1, G, 0, G, 1, 0, G, 0, 1],
              [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]],
}
EVAL_GOAL_CELLS = {"umaze": (3, 1), "medium": (6, 6), "large": (7, 9)}  # the G of U_MAZE_TEST etc.
START_CELL = (1, 1)  # the R of every map: the origin


def walls(maze: str) -> np.ndarray:
    """(rows, cols) 1 for a wall block, 0 for a free cell (the R and G marks are free)."""
    return np.asarray([[1 if v == 1 else 0 for v in row] for row in DATA_MAPS[maze]])


def cell_xy(cell) -> np.ndarray:
    """A cell's centre in the env's coordinates (maze_env.py `_rowcol_to_xy`: the start cell's
    centre is the origin)."""
    row, col = cell
    return np.array([(col - START_CELL[1]) * SCALING, (row - START_CELL[0]) * SCALING], np.float64)


def goal_noise(rng: np.random.Generator, cell) -> np.ndarray:
    """D4RL's goal in `cell` (maze_env.py:227-258 `goal_sampler`): the centre plus U(0, 1) plus
    U(0, 0.5) on each axis (0.25 and 0.125 of a cell), clamped to >= 0."""
    xy = cell_xy(cell) + rng.uniform(0.0, 0.25 * SCALING, 2) + rng.uniform(0.0, 0.5, 2) * 0.25 * SCALING
    return np.maximum(xy, 0.0)


def reset_location(rng: np.random.Generator, maze: str) -> np.ndarray:
    """D4RL's start anywhere (maze_env.py:214-225 `_get_reset_location`): a free cell that is not
    a goal cell of the data map, uniformly, plus U(0, 1) on each axis, clamped to >= 0."""
    cells = [(r, c) for r, row in enumerate(DATA_MAPS[maze]) for c, v in enumerate(row) if v in (0, R)]
    xy = cell_xy(cells[rng.integers(len(cells))]) + rng.uniform(0.0, 0.5, 2) * 0.5 * SCALING
    return np.maximum(xy, 0.0)


def model_xml(maze: str | None = None) -> str:
    """Gymnasium's ant.xml edited to D4RL's ant (module docstring), with `maze`'s walls."""
    path = os.path.join(os.path.dirname(gym.__file__), "envs", "mujoco", "assets", "ant.xml")
    tree = ET.parse(path)
    root = tree.getroot()
    root.find("option").attrib.update(timestep=str(TIMESTEP), integrator="RK4")
    root.find("default/geom").attrib.update(solref=SOLREF, solimp=SOLIMP)
    for motor in root.find("actuator"):
        motor.attrib.update(gear="1", ctrlrange=f"{-MAX_TORQUE} {MAX_TORQUE}", ctrllimited="true")
    if maze is not None:
        worldbody = root.find("worldbody")
        half, z = 0.5 * SCALING, WALL_HEIGHT / 2 * SCALING
        for r, c in zip(*np.nonzero(walls(maze))):  # maze_env.py:177-196
            x, y = cell_xy((r, c))
            ET.SubElement(worldbody, "geom", name=f"block_{r}_{c}", type="box", pos=f"{x} {y} {z}",
                          size=f"{half} {half} {z}", contype="1", conaffinity="1", rgba="0.7 0.5 0.3 1")
    return ET.tostring(root, encoding="unicode")


upside_down = goal_ant.upside_down  # the same body: qpos[3:7] is the torso quaternion in both ants


class D4RLAnt(gym.Env):
    """D4RL's ant in `maze` (None: an open floor): physics, reset noise and the 29-number
    observation. Subclasses add the task."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, maze: str | None = None, render_mode: str | None = None):
        self.maze = maze
        self.model = mujoco.MjModel.from_xml_string(model_xml(maze))
        self.data = mujoco.MjData(self.model)
        self.init_qpos, self.init_qvel = self.data.qpos.copy(), self.data.qvel.copy()  # the model's qpos0
        self.dt = TIMESTEP * FRAME_SKIP
        self.render_mode, self._renderer = render_mode, None
        self.action_space = gym.spaces.Box(-1.0, 1.0, (self.model.nu,), np.float32)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (29,), np.float64)

    def _observe(self) -> np.ndarray:
        return np.concatenate([self.data.qpos[:15], self.data.qvel[:14]])

    def xy(self) -> np.ndarray:
        return self.data.qpos[:2].copy()

    def _reset_ant(self, start_xy=None) -> None:
        """ant.py:120-134: qpos0 + U(-0.1, 0.1), qvel N(0, 0.1); `start_xy` replaces x, y."""
        mujoco.mj_resetData(self.model, self.data)
        qpos = self.init_qpos + self.np_random.uniform(-0.1, 0.1, self.model.nq)
        qvel = self.init_qvel + 0.1 * self.np_random.standard_normal(self.model.nv)
        if start_xy is not None:
            qpos[:2] = start_xy
        self.data.qpos[:], self.data.qvel[:] = qpos, qvel
        mujoco.mj_forward(self.model, self.data)

    def _simulate(self, action) -> None:
        # wrappers.py NormalizedBoxEnv: [-1, 1] -> [-30, 30], clipped.
        self.data.ctrl[:] = np.clip(np.asarray(action, np.float64), -1.0, 1.0) * MAX_TORQUE
        mujoco.mj_step(self.model, self.data, nstep=FRAME_SKIP)

    def flipped(self) -> bool:
        return bool(upside_down(self.data.qpos))

    def render(self):
        if self._renderer is None:
            self._renderer = mujoco.Renderer(self.model, 480, 480)
        camera = mujoco.MjvCamera()
        camera.lookat[:] = [*self.xy(), 0.0]
        camera.distance, camera.elevation = 12.0, -60.0
        self._renderer.update_scene(self.data, camera)
        return self._renderer.render()

    def close(self):
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None


class D4RLAntMaze(D4RLAnt):
    """D4RL's AntMaze (module docstring). `evaluation=True`: D4RL's evaluation task. Otherwise a
    continuing data env whose reward is 1[|xy' - reward_goal| <= 0.5] (no termination); reset
    options `start_xy` (default: the origin) and `goal_xy` set where an episode starts and which
    goal `info['goal']` reports (the data builder's commanded goal)."""

    def __init__(self, maze: str = "umaze", evaluation: bool = True, reward_goal=None,
                 render_mode: str | None = None):
        if maze not in DATA_MAPS:
            raise ValueError(f"unknown D4RL maze {maze!r}; choose from {tuple(DATA_MAPS)}")
        super().__init__(maze, render_mode)
        self.evaluation = evaluation
        self.reward_goal = None if reward_goal is None else np.asarray(reward_goal, np.float64)
        if not evaluation and self.reward_goal is None:
            raise ValueError("a D4RL AntMaze data env needs the reward_goal its rewards are relabelled to")
        self.goal = np.zeros(2)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        options = options or {}
        self._reset_ant(options.get("start_xy"))
        if self.evaluation:
            self.goal = goal_noise(self.np_random, EVAL_GOAL_CELLS[self.maze])
        else:
            self.goal = np.asarray(options.get("goal_xy", self.reward_goal), np.float64)
        return self._observe(), self._info()

    def _info(self) -> dict:
        target = self.goal if self.evaluation else self.reward_goal
        return {"success": bool(np.linalg.norm(self.xy() - target) <= SUCCESS_RADIUS), "goal": self.goal.copy(),
                "xy": self.xy(), "flipped": self.flipped()}

    def step(self, action):
        self._simulate(action)
        info = self._info()
        reward = float(info["success"])
        return self._observe(), reward, self.evaluation and info["success"], False, info


# The goal-reaching controller's task (D4RL's GoalReachingAntEnv, goal_reaching_env.py, trained
# its own): the ant on an open floor reads the direction to a goal, scaled to 10 m as D4RL's
# data collection commands it (generate_ant_maze_datasets.py:108-109), in its heading frame.
COMMAND_DISTANCE = 10.0
GOAL_RANGE = (1.0, 8.0)  # m: how far away each new goal is drawn
HEALTHY_Z = (0.2, 1.0)  # ant.py:80-81
HEALTHY_REWARD, CTRL_COST_WEIGHT = 0.5, 0.05


def controller_input(observation: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """(n, 29) D4RL observations and (n, 2) targets -> (n, 29) controller inputs: the body
    (qpos[2:15], qvel[:14]) with the torso's planar velocity in its heading frame, followed by
    the direction to the target in the heading frame, 10 m long (D4RL's commanded length)."""
    observation = np.asarray(observation, np.float64)
    xy = observation[:, :2]
    delta = np.asarray(targets, np.float64) - xy
    unit = delta / np.maximum(np.linalg.norm(delta, axis=-1, keepdims=True), 1e-8)
    return goal_ant.policy_input(observation[:, 2:], xy, xy + COMMAND_DISTANCE * unit, COMMAND_DISTANCE)


class D4RLGoalAnt(D4RLAnt):
    """D4RL's ant on an open floor, rewarded for walking towards goals drawn 1-8 m away (a new
    one within 0.5 m of the last): reward = progress in m/s + 0.5 while healthy - 0.05 |a|^2
    (the weights that taught the Gymnasium-ant controller to walk, behavior/goal_ant.py); the
    episode (500 steps, 50 s) ends when the torso leaves D4RL's healthy height or turns over."""

    def __init__(self, render_mode: str | None = None):
        super().__init__(None, render_mode)
        self.goal = np.zeros(2)

    def _new_goal(self) -> np.ndarray:
        radius, angle = self.np_random.uniform(*GOAL_RANGE), self.np_random.uniform(0.0, 2 * np.pi)
        return self.xy() + radius * np.array([np.cos(angle), np.sin(angle)])

    def _obs(self) -> np.ndarray:
        return controller_input(self._observe()[None], self.goal[None])[0].astype(np.float64)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._reset_ant()
        self.goal = self._new_goal()
        return self._obs(), {}

    def step(self, action):
        before = np.linalg.norm(self.goal - self.xy())
        self._simulate(action)
        after = np.linalg.norm(self.goal - self.xy())
        z = self.data.qpos[2]
        healthy = HEALTHY_Z[0] <= z <= HEALTHY_Z[1] and not self.flipped()
        action = np.asarray(action, np.float64)
        reward = (before - after) / self.dt + HEALTHY_REWARD * healthy - CTRL_COST_WEIGHT * float(np.sum(action**2))
        reached = after <= SUCCESS_RADIUS
        if reached:
            self.goal = self._new_goal()
        info = {"goal_distance": after, "reached": reached, "flipped": self.flipped()}
        return self._obs(), float(reward), not healthy, False, info


for _maze, _id in ENV_IDS.items():
    if _id not in gym.registry:
        gym.register(id=_id, entry_point="behavior.d4rl_antmaze:D4RLAntMaze", max_episode_steps=HORIZONS[_maze],
                     kwargs={"maze": _maze})
if "D4RLGoalAnt-v0" not in gym.registry:
    gym.register(id="D4RLGoalAnt-v0", entry_point="behavior.d4rl_antmaze:D4RLGoalAnt", max_episode_steps=500)
