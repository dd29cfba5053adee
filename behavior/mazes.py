"""D4RL-style AntMaze and PointMaze datasets, made offline (Gymnasium-Robotics' maze envs).

As D4RL, a waypoint planner on the maze grid steers a low-level controller towards the current
goal: the planner runs a breadth-first search from the goal cell over the free cells, and the
controller's target is the centre of the next cell on the shortest path (the goal itself once
the agent is in the goal's cell). The straight line from anywhere in a cell to the centre of a
neighbouring cell stays inside the two cells, so the target never lies behind a wall.

- AntMaze: the controller is a goal-reaching Ant policy (`behavior/goal_ant.py`, trained with
  the project's SAC; shipped in `policies/goal_ant`), reading the target relative to the ant;
  its actions are sampled from the stochastic policy, as D4RL's.
- PointMaze: a PD controller on the ball, action = clip(KP (target - xy) - KD v), as Minari's
  D4RL/pointmaze sets.

Dataset kinds (`<family>/<maze>[-<regime>]-v0`, e.g. local/antmaze/medium-play-v0):
  umaze (fixed)  one start cell and one goal cell: D4RL's evaluation task itself
  <maze>-diverse start and goal cells drawn from all free cells; a new goal on each arrival
  <maze>-play    start and goal cells drawn from a hand-picked few (the 'c' cells of
                 Gymnasium-Robotics' *_DIVERSE_GR maps); a new goal on each arrival
The data env is continuing (reaching the goal neither terminates nor resets the episode) and
episodes are cut by the time limit (`timeouts`), as D4RL's AntMaze. Rewards are the sparse
1[|xy - goal| <= 0.45]. Evaluation is D4RL's task: start in the start cell, reach the goal cell,
the episode terminating at the goal; return = success in {0, 1}, so the metadata's reference
scores (0, 1) make the normalised score 100 x success rate, as D4RL's AntMaze.
"""

import collections
import os

import gymnasium as gym
import gymnasium_robotics
import jax
import numpy as np
from gymnasium_robotics.envs.maze import maps
from tqdm import tqdm

import dataset as dataset_lib
from behavior import goal_ant
from behavior.datasets import SHIPPED, Behavior, make_policy
from harness.cli import UserError

gym.register_envs(gymnasium_robotics)

FAMILIES = {"antmaze": "AntMaze_UMaze-v4", "pointmaze": "PointMaze_UMaze-v3"}  # the env classes; maps are ours
MAZES = {"umaze": maps.U_MAZE, "medium": maps.MEDIUM_MAZE, "large": maps.LARGE_MAZE}
# D4RL's evaluation start and goal cells (row, col): d4rl/locomotion/maze_env.py's R and G.
EVAL_CELLS = {"umaze": ((1, 1), (3, 1)), "medium": ((1, 1), (6, 6)), "large": ((1, 1), (7, 9))}
PLAY_CELLS = {
    "umaze": [(1, 1), (1, 3), (3, 1), (3, 3)],
    "medium": [(r, c) for r, row in enumerate(maps.MEDIUM_MAZE_DIVERSE_GR) for c, v in enumerate(row) if v == "c"],
    "large": [(r, c) for r, row in enumerate(maps.LARGE_MAZE_DIVERSE_GR) for c, v in enumerate(row) if v == "c"],
}
REGIMES = ("fixed", "diverse", "play")
# Episode lengths: D4RL's AntMaze evaluation time limits (700 / 1000 / 1000), and data
# episodes of 1000 steps; PointMaze's as Minari's D4RL/pointmaze (300 / 600 / 800).
EVAL_STEPS = {"antmaze": {"umaze": 700, "medium": 1000, "large": 1000},
              "pointmaze": {"umaze": 300, "medium": 600, "large": 800}}
DATA_STEPS = {"antmaze": {"umaze": 1000, "medium": 1000, "large": 1000},
              "pointmaze": {"umaze": 300, "medium": 600, "large": 800}}
# PointMaze's PD gains (Minari's D4RL/pointmaze generation script uses p = 10, d = -1).
KP, KD = 10.0, 1.0
ANT_POLICY = os.path.join(SHIPPED, "goal_ant")


def parse_kind(kind: str) -> tuple[str, str]:
    """'medium-play' -> ('medium', 'play'); 'umaze' -> ('umaze', 'fixed')."""
    maze, _, regime = kind.partition("-")
    regime = regime or "fixed"
    if maze not in MAZES or regime not in REGIMES:
        raise UserError(f"unknown maze dataset kind {kind!r}: <maze>[-<regime>] with maze in {tuple(MAZES)} "
                        f"and regime in ('diverse', 'play'), or no regime for the fixed start and goal")
    return maze, regime


def marked_map(maze: str, starts, goals) -> list[list]:
    """The maze map with 'r' on the start cells, 'g' on the goal cells ('c' on both)."""
    grid = [list(row) for row in MAZES[maze]]
    for cell in set(starts) | set(goals):
        grid[cell[0]][cell[1]] = "c" if cell in starts and cell in goals else ("r" if cell in starts else "g")
    return grid


def free_cells(maze: str) -> list[tuple[int, int]]:
    return [(r, c) for r, row in enumerate(MAZES[maze]) for c, v in enumerate(row) if v != 1]


def env_kwargs(family: str, maze: str, regime: str, evaluation: bool) -> dict:
    """gym.make keyword arguments of a data env (continuing) or of the evaluation env."""
    if evaluation or regime == "fixed":
        start, goal = EVAL_CELLS[maze]
        grid, reset_target = marked_map(maze, [start], [goal]), False
    else:
        cells = free_cells(maze) if regime == "diverse" else PLAY_CELLS[maze]
        grid, reset_target = marked_map(maze, cells, cells), True
    steps = (EVAL_STEPS if evaluation else DATA_STEPS)[family][maze]
    return dict(maze_map=grid, continuing_task=not evaluation, reset_target=reset_target, max_episode_steps=steps)


def make_env(family: str, maze: str, regime: str = "fixed", evaluation: bool = True, **kwargs) -> gym.Env:
    return gym.make(FAMILIES[family], **env_kwargs(family, maze, regime, evaluation), **kwargs)


class Planner:
    """Waypoints on the maze grid: the centre of the next cell on a shortest path to the goal."""

    def __init__(self, maze):  # a gymnasium_robotics Maze (env.unwrapped.maze)
        self.maze = maze
        self.grid = np.asarray([[1 if v == 1 else 0 for v in row] for row in maze.maze_map])
        self._distances = {}

    def distances(self, goal_cell: tuple[int, int]) -> np.ndarray:
        """Breadth-first steps from every free cell to `goal_cell` (inf for walls)."""
        if goal_cell not in self._distances:
            dist = np.full(self.grid.shape, np.inf)
            dist[goal_cell] = 0
            queue = collections.deque([goal_cell])
            while queue:
                r, c = queue.popleft()
                for nr, nc in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)):
                    if self.grid[nr, nc] == 0 and dist[nr, nc] == np.inf:
                        dist[nr, nc] = dist[r, c] + 1
                        queue.append((nr, nc))
            self._distances[goal_cell] = dist
        return self._distances[goal_cell]

    def cell(self, xy) -> tuple[int, int]:
        r, c = self.maze.cell_xy_to_rowcol(np.asarray(xy))
        return int(np.clip(r, 0, self.grid.shape[0] - 1)), int(np.clip(c, 0, self.grid.shape[1] - 1))

    def target(self, xy, goal_xy) -> np.ndarray:
        here, goal = self.cell(xy), self.cell(goal_xy)
        dist = self.distances(goal)
        if here == goal or not np.isfinite(dist[here]):
            return np.asarray(goal_xy, np.float64)
        r, c = here
        step = min(((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)), key=lambda rc: dist[rc])
        return np.asarray(self.maze.cell_rowcol_to_xy(np.asarray(step)), np.float64)


def ant_controller(behavior_dir: str = ANT_POLICY):
    """(observation dicts stacked, targets, key) -> actions of the goal-reaching Ant policy."""
    behavior = Behavior(behavior_dir)
    policy = make_policy(behavior, behavior.expert["step"], behavior.meta["action_dim"])

    def act(obs: dict, targets: np.ndarray, key) -> np.ndarray:
        return np.asarray(policy(goal_ant.policy_input(obs["observation"], obs["achieved_goal"], targets), key))

    return act


def point_controller(obs: dict, targets: np.ndarray, key=None) -> np.ndarray:
    """PD control of the ball towards the targets (observation = x, y, vx, vy)."""
    state = obs["observation"]
    return np.clip(KP * (targets - state[:, :2]) - KD * state[:, 2:4], -1.0, 1.0).astype(np.float32)


def stack(observations: list[dict]) -> dict:
    return {k: np.stack([o[k] for o in observations]) for k in observations[0]}


def drive(envs, controller, steps: int, key, desc: str = "maze") -> dict:
    """Step `envs` (continuing maze envs, possibly DataCollector-wrapped) in lockstep for `steps`
    env steps in all; returns {'episodes', 'arrivals'} (goal arrivals counted per step the goal
    changes or the agent first reaches it)."""
    env_key, act_key = jax.random.split(key)
    planners = [Planner(e.unwrapped.maze) for e in envs]
    resets = 0

    def reset(env):
        nonlocal resets
        seed = int(jax.random.randint(jax.random.fold_in(env_key, resets), (), 0, 2**31 - 1))
        resets += 1
        return env.reset(seed=seed)[0]

    obs = [reset(e) for e in envs]
    at_goal = np.zeros(len(envs), bool)
    arrivals, done_steps, call = 0, 0, 0
    with tqdm(total=steps, unit="step", desc=desc, dynamic_ncols=True, mininterval=1.0) as bar:
        while done_steps < steps:
            active = min(len(envs), steps - done_steps)
            batch = stack(obs)
            targets = np.stack([p.target(o["achieved_goal"], o["desired_goal"]) for p, o in zip(planners, obs)])
            actions = controller(batch, targets, jax.random.fold_in(act_key, call))
            call += 1
            for j in range(active):
                next_obs, _, terminated, truncated, info = envs[j].step(actions[j])
                success = bool(info.get("success", False))
                arrivals += success and not at_goal[j]
                at_goal[j] = success
                if terminated or truncated:
                    next_obs, at_goal[j] = reset(envs[j]), False
                obs[j] = next_obs
            done_steps += active
            bar.update(active)
    return {"episodes": resets, "arrivals": int(arrivals)}


def controller_for(family: str, behavior_dir: str | None = None):
    return ant_controller(behavior_dir or ANT_POLICY) if family == "antmaze" else point_controller


def success_rate(family: str, maze: str, controller, episodes: int, seed: int) -> float:
    """Fraction of evaluation episodes (D4RL's start and goal) the planner + controller solve."""
    envs = [make_env(family, maze, evaluation=True) for _ in range(episodes)]
    planners = [Planner(e.unwrapped.maze) for e in envs]
    key = jax.random.key(seed)
    obs = [e.reset(seed=seed + i)[0] for i, e in enumerate(envs)]
    running, solved, call = np.ones(episodes, bool), np.zeros(episodes, bool), 0
    while running.any():
        targets = np.stack([p.target(o["achieved_goal"], o["desired_goal"]) for p, o in zip(planners, obs)])
        actions = controller(stack(obs), targets, jax.random.fold_in(key, call))
        call += 1
        for j in np.flatnonzero(running):
            obs[j], _, terminated, truncated, info = envs[j].step(actions[j])
            solved[j] |= bool(info.get("success", False))
            running[j] = not (terminated or truncated)
    for e in envs:
        e.close()
    return float(solved.mean())


def make_maze_dataset(family: str, kind: str, namespace: str = "local", steps: int = 1_000_000, seed: int = 0,
                      num_envs: int = 16, behavior_dir: str | None = None, overwrite: bool = False) -> str:
    """Record `<namespace>/<family>/<kind>-v0` into the local Minari root; returns its id."""
    import minari  # heavy: imported when a dataset is made

    if family not in FAMILIES:
        raise UserError(f"unknown maze family {family!r}; choose from {tuple(FAMILIES)}")
    maze, regime = parse_kind(kind)
    ds_id = f"{namespace}/{family}/{kind}-v0"
    if ds_id in minari.list_local_datasets():
        if not overwrite:
            print(f"{ds_id} already exists in {dataset_lib.minari_root()}; keeping it (--overwrite replaces it)")
            return ds_id
        minari.delete_dataset(ds_id)
    controller = controller_for(family, behavior_dir)
    collectors = [minari.DataCollector(make_env(family, maze, regime, evaluation=False)) for _ in range(num_envs)]
    try:
        stats = drive(collectors, controller, steps, jax.random.fold_in(jax.random.key(seed), REGIMES.index(regime)),
                      desc=ds_id)
        eval_spec = make_env(family, maze, evaluation=True).spec
        controller_name = "goal-reaching Ant SAC policy" if family == "antmaze" else f"PD controller (kp {KP}, kd {KD})"
        dataset = collectors[0].create_dataset(
            dataset_id=ds_id,
            eval_env=eval_spec,
            algorithm_name=f"waypoint planner on the maze grid + {controller_name}, behavior/mazes.py",
            author="iql-jax behavior/mazes.py",
            author_email="none",
            code_permalink="behavior/mazes.py",
            description=f"D4RL-style {family} {kind}: {steps} steps, {stats['episodes']} episodes, "
                        f"{stats['arrivals']} goal arrivals; evaluation: start {EVAL_CELLS[maze][0]}, goal "
                        f"{EVAL_CELLS[maze][1]}, terminating at the goal (return = success)",
            ref_min_score=0.0,
            ref_max_score=1.0,
        )
        for collector in collectors[1:]:
            collector.add_to_dataset(dataset)
    finally:
        for collector in collectors:
            collector.close()
    print(f"{ds_id}: {steps:,} steps, {stats['episodes']} episodes, {stats['arrivals']} goal arrivals")
    return ds_id


def ensure_maze_dataset(ds_id: str, steps: int = 1_000_000, seed: int = 0) -> bool:
    """Build `local/antmaze/<kind>-v0` or `local/pointmaze/<kind>-v0` if it is not there yet.
    Returns True when it built one; False when the id is not such an id or already exists."""
    import minari  # heavy: imported when a dataset is made

    parts = ds_id.split("/")
    if len(parts) != 3 or parts[0] != "local" or parts[1] not in FAMILIES or not parts[2].endswith("-v0"):
        return False
    if ds_id in minari.list_local_datasets():
        return False
    kind = parts[2][: -len("-v0")]
    parse_kind(kind)
    print(f"{ds_id} is not in the local Minari root {dataset_lib.minari_root()}; building it ({steps:,} steps: "
          f"{'~15 min for AntMaze' if parts[1] == 'antmaze' else 'a few minutes'} on a laptop CPU)")
    make_maze_dataset(parts[1], kind, "local", steps, seed)
    return True

