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

Dataset kinds (`<family>/<maze>[-<regime>]-v<version>`, e.g. local/antmaze/medium-play-v1): each
episode draws a (start cell, commanded goal cell) pair and the controller drives there, then
stays, until the time limit (`timeouts`; the data env is continuing), as D4RL:
  umaze (fixed)  D4RL's evaluation start and goal cells only
  <maze>-diverse any two different free cells
  <maze>-play    two different cells of a hand-picked few (the 'c' cells of
                 Gymnasium-Robotics' *_DIVERSE_GR maps)
As D4RL (relabel_antmaze_rewards.py), rewards and `info['success']` are about the evaluation
goal, not the commanded one: 1[|xy - goal| <= 0.45] with the goal drawn per episode around
D4RL's goal cell as the evaluation env draws it, and `desired_goal` observes that goal; so the
diverse and play sets reward only trajectories that pass the goal, and reaching it from the
start means stitching them. Evaluation is D4RL's task: start in the start cell, reach the goal
cell, the episode terminating there; return = success in {0, 1}, so the metadata's reference
scores (0, 1) make the normalised score 100 x success rate, as D4RL's AntMaze.

The sets are `-v1`: an episode whose commanded goal cell is the evaluation cell is commanded
to the evaluation goal itself, so the controller settles inside the success radius (the
earlier `-v0` builder drew the two goals apart there; docs/mazes.md has what that did).
"""

import collections
import os

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

import dataset as dataset_lib
from dataset import DatasetError
from behavior import d4rl_antmaze, goal_ant, ids
from behavior.datasets import SHIPPED, Behavior, make_policy, make_room
from evaluation import register_robotics

FAMILIES = {"antmaze": "AntMaze_UMaze-v4", "pointmaze": "PointMaze_UMaze-v3"}  # the env classes; maps are ours
# Gymnasium-Robotics' U_MAZE, MEDIUM_MAZE and LARGE_MAZE are D4RL's layouts (tested), so the maps
# come from d4rl_antmaze and this module imports gymnasium_robotics only when it makes an env.
MAZES = {maze: d4rl_antmaze.walls(maze).tolist() for maze in ("umaze", "medium", "large")}
# D4RL's evaluation start and goal cells (row, col): d4rl/locomotion/maze_env.py's R and G.
EVAL_CELLS = {"umaze": ((1, 1), (3, 1)), "medium": ((1, 1), (6, 6)), "large": ((1, 1), (7, 9))}
# The 'c' cells of Gymnasium-Robotics' *_DIVERSE_GR maps (D4RL's R and G cells of BIG_MAZE and
# HARDEST_MAZE), and umaze's four corners.
PLAY_CELLS = {
    "umaze": [(1, 1), (1, 3), (3, 1), (3, 3)],
    "medium": [(1, 1), (2, 6), (5, 1), (6, 5)],
    "large": [(1, 1), (1, 6), (3, 5), (3, 10), (5, 2), (7, 4), (7, 6), (7, 9)],
}
REGIMES = ("fixed", "diverse", "play")
# Exploration noise added to the controller's actions: D4RL's AntMaze N(0, 0.2) (its --noisy
# sets); Minari's D4RL/pointmaze N(0, 0.5).
ACTION_NOISE = {"antmaze": 0.2, "pointmaze": 0.5}
# Episode lengths: D4RL's AntMaze evaluation time limits (700 / 1000 / 1000), and data
# episodes of 1000 steps; PointMaze's as Minari's D4RL/pointmaze (300 / 600 / 800).
EVAL_STEPS = {"antmaze": {"umaze": 700, "medium": 1000, "large": 1000},
              "pointmaze": {"umaze": 300, "medium": 600, "large": 800}}
DATA_STEPS = {"antmaze": {"umaze": 1000, "medium": 1000, "large": 1000},
              "pointmaze": {"umaze": 300, "medium": 600, "large": 800}}
# PointMaze's PD gains (Minari's D4RL/pointmaze generation script uses p = 10, d = -1).
KP, KD = 10.0, 1.0
ALIGN = 0.25  # cells: how far off the axis to the next cell the planner first re-centres the agent
ANT_POLICY = os.path.join(SHIPPED, "goal_ant")


def parse_kind(kind: str) -> tuple[str, str]:
    """'medium-play' -> ('medium', 'play'); 'umaze' -> ('umaze', 'fixed')."""
    maze, _, regime = kind.partition("-")
    regime = regime or "fixed"
    if maze not in MAZES or regime not in REGIMES:
        raise DatasetError(f"unknown maze dataset kind {kind!r}: <maze>[-<regime>] with maze in {tuple(MAZES)} "
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


def cell_pairs(maze: str, regime: str) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """The (start cell, commanded goal cell) pairs an episode of `regime` draws from."""
    if regime == "fixed":
        return [EVAL_CELLS[maze]]
    cells = free_cells(maze) if regime == "diverse" else PLAY_CELLS[maze]
    return [(a, b) for a in cells for b in cells if a != b]


def make_env(family: str, maze: str, evaluation: bool = True, **kwargs) -> gym.Env:
    """The evaluation env (D4RL's start and goal cells, terminating at the goal, D4RL's time
    limit) or a data env (continuing; any cell may be a start or a goal: `record` picks them)."""
    start, goal = EVAL_CELLS[maze]
    grid = marked_map(maze, [start], [goal]) if evaluation else [[1 if v == 1 else "c" for v in row]
                                                                 for row in MAZES[maze]]
    steps = (EVAL_STEPS if evaluation else DATA_STEPS)[family][maze]
    register_robotics(FAMILIES[family])
    return gym.make(FAMILIES[family], maze_map=grid, continuing_task=not evaluation, reset_target=False,
                    max_episode_steps=steps, **kwargs)


class EvaluationGoal(gym.Wrapper):
    """A data env seen through D4RL's relabelling: the controller drives to the commanded goal
    (`commanded_goal()`), but rewards, `info['success']` and the observed `desired_goal` are
    about the evaluation goal, drawn per episode around D4RL's goal cell with the evaluation
    env's noise. An episode commanded to the evaluation cell is commanded to the evaluation
    goal itself."""

    def __init__(self, env: gym.Env, goal_cell: tuple[int, int]):
        super().__init__(env)
        self.goal_cell, self.goal = tuple(goal_cell), np.zeros(2)
        self._command_goal = False

    def commanded_goal(self) -> np.ndarray:
        return self.goal if self._command_goal else self.env.unwrapped.goal

    def _view(self, obs: dict) -> tuple[dict, bool]:
        success = bool(np.linalg.norm(obs["achieved_goal"] - self.goal) <= 0.45)
        return {**obs, "desired_goal": self.goal.copy()}, success

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        maze = self.env.unwrapped
        self.goal = maze.add_xy_position_noise(maze.maze.cell_rowcol_to_xy(np.asarray(self.goal_cell)))
        commanded_cell = tuple(int(v) for v in maze.maze.cell_xy_to_rowcol(maze.goal))
        self._command_goal = commanded_cell == self.goal_cell
        obs, success = self._view(obs)
        return obs, {**info, "success": success}

    def step(self, action):
        obs, _, terminated, truncated, info = self.env.step(action)
        obs, success = self._view(obs)
        return obs, float(success), terminated, truncated, {**info, "success": success}


class Planner:
    """Waypoints on the maze grid: the centre of the next cell on a shortest path to the goal,
    or of this cell while the agent is off the axis between the two (after a turn)."""

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

    def waypoint(self, xy, goal_xy) -> np.ndarray:
        """Where the controller steers now (deterministic; D4RL's planner, in d4rl_datasets.py,
        jitters its waypoints and takes an rng)."""
        here, goal = self.cell(xy), self.cell(goal_xy)
        dist = self.distances(goal)
        if here == goal or not np.isfinite(dist[here]):
            return np.asarray(goal_xy, np.float64)
        r, c = here
        step = min(((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)), key=lambda rc: dist[rc])
        centre = np.asarray(self.maze.cell_rowcol_to_xy(np.asarray(here)), np.float64)
        ahead = np.asarray(self.maze.cell_rowcol_to_xy(np.asarray(step)), np.float64)
        # Just round a corner, aiming at the next centre cuts across the wall's corner (where
        # the ant caught and flipped): first get within ALIGN of this cell's axis towards it.
        axis = (ahead - centre) / np.linalg.norm(ahead - centre)
        off_axis = np.asarray(xy, np.float64) - centre
        off_axis -= np.dot(off_axis, axis) * axis
        if np.linalg.norm(off_axis) > ALIGN * self.maze.maze_size_scaling:
            return centre
        return ahead


def ant_controller(behavior_dir: str = ANT_POLICY, noise: float = ACTION_NOISE["antmaze"]):
    """(observation dicts stacked, targets, key) -> actions: the goal-reaching Ant policy's mean
    plus N(0, noise) (D4RL's noisy sets), clipped to [-1, 1]."""
    if not os.path.exists(os.path.join(behavior_dir, "behavior.json")):
        raise DatasetError(
            f"no goal-reaching Ant policy in {behavior_dir}: AntMaze datasets need one. Train it with `python -m "
            f"tools.train_behavior --env={goal_ant.ENV_ID} --workdir=runs/behavior/goal_ant` (resumable; hours "
            "on a CPU) and pass --behavior=runs/behavior/goal_ant to tools.collect, or train on Minari's "
            "D4RL/antmaze datasets")
    behavior = Behavior(behavior_dir)
    policy = make_policy(behavior, behavior.expert["step"], behavior.meta["action_dim"], deterministic=True)

    def act(obs: dict, targets: np.ndarray, key) -> np.ndarray:
        mean = policy(goal_ant.policy_input(obs["observation"], obs["achieved_goal"], targets), key)
        return np.asarray(jnp.clip(mean + noise * jax.random.normal(key, mean.shape), -1.0, 1.0))

    return act


def point_controller(noise: float = ACTION_NOISE["pointmaze"]):
    """PD control of the ball towards the targets (observation = x, y, vx, vy), plus N(0, noise)."""

    def act(obs: dict, targets: np.ndarray, key) -> np.ndarray:
        state = obs["observation"]
        pd = KP * (targets - state[:, :2]) - KD * state[:, 2:4]
        return np.clip(pd + noise * np.asarray(jax.random.normal(key, pd.shape)), -1.0, 1.0).astype(np.float32)

    return act


def controller(family: str, behavior_dir: str | None = None, noise: float | None = None):
    """The family's controller: (observation dicts stacked, waypoints, key) -> actions."""
    noise = ACTION_NOISE[family] if noise is None else noise
    return ant_controller(behavior_dir or ANT_POLICY, noise) if family == "antmaze" else point_controller(noise)


def stack(observations: list[dict]) -> dict:
    return {k: np.stack([o[k] for o in observations]) for k in observations[0]}


def drive(envs, act, key, obs: list, goal, restart, steps: int | None = None, desc: str | None = None):
    """Drive `envs` in lockstep from their observations `obs`: each call of the controller `act` gets
    every env's planner waypoint towards `goal(j, obs_j)` and `key` folded with the call's index.
    When env j's episode ends, `restart(j)` gives its next first observation, or None to stop it.
    Runs for `steps` env steps in all (None: until every env has stopped); returns (finished
    episodes, of them those that reached success at some step)."""
    planners = [Planner(e.unwrapped.maze) for e in envs]
    running, reached = np.ones(len(envs), bool), np.zeros(len(envs), bool)
    finished = successes = taken = call = 0
    with tqdm(total=steps, unit="step", desc=desc, dynamic_ncols=True, mininterval=1.0, disable=desc is None) as bar:
        while running.any() and (steps is None or taken < steps):
            targets = np.stack([p.waypoint(o["achieved_goal"], goal(j, o)) for j, (p, o) in enumerate(zip(planners, obs))])
            actions = act(stack(obs), targets, jax.random.fold_in(key, call))
            call += 1
            for j in np.flatnonzero(running):
                if steps is not None and taken == steps:
                    break
                obs[j], _, terminated, truncated, info = envs[j].step(actions[j])
                taken += 1
                reached[j] |= bool(info.get("success", False))
                if terminated or truncated:
                    finished, successes, reached[j] = finished + 1, successes + int(reached[j]), False
                    first = restart(j)
                    running[j] = first is not None
                    obs[j] = obs[j] if first is None else first
            bar.update(taken - bar.n)
    return finished, successes


def record(envs, act, pairs, steps: int, key, desc: str = "maze") -> dict:
    """Step `envs` (EvaluationGoal-wrapped data envs, possibly inside DataCollectors) for
    `steps` env steps in all, each episode from a (start, goal) cell pair drawn from `pairs` and
    commanded to its goal; returns {'episodes', 'success_episodes'} (those passing the evaluation goal)."""
    env_key, act_key = jax.random.split(key)
    resets = 0

    def reset(j):
        nonlocal resets
        k = jax.random.fold_in(env_key, resets)
        start, goal = pairs[int(jax.random.randint(k, (), 0, len(pairs)))]
        seed = int(jax.random.randint(jax.random.fold_in(k, 1), (), 0, 2**31 - 1))
        resets += 1
        return envs[j].reset(seed=seed, options={"reset_cell": np.asarray(start), "goal_cell": np.asarray(goal)})[0]

    def goal_view(env):  # the EvaluationGoal wrapper inside a DataCollector
        while not isinstance(env, EvaluationGoal):
            env = env.env
        return env

    views = [goal_view(e) for e in envs]
    obs = [reset(j) for j in range(len(envs))]
    _, successes = drive(envs, act, act_key, obs, lambda j, _: views[j].commanded_goal(), reset, steps, desc)
    return {"episodes": resets, "success_episodes": successes}


def success_rate(family: str, maze: str, act, episodes: int, seed: int) -> dict:
    """{'success': the fraction of evaluation episodes (D4RL's start and goal) the planner +
    controller `act` solve}."""
    envs = [make_env(family, maze, evaluation=True) for _ in range(episodes)]
    obs = [e.reset(seed=seed + i)[0] for i, e in enumerate(envs)]
    finished, solved = drive(envs, act, jax.random.key(seed), obs, lambda _, o: o["desired_goal"], lambda _: None)
    for e in envs:
        e.close()
    return {"success": solved / finished}


def make_dataset(family: str, kind: str, namespace: str = "local", steps: int = 1_000_000, seed: int = 0,
                      num_envs: int = 16, behavior_dir: str | None = None, overwrite: bool = False,
                      pairs: list | None = None, noise: float | None = None) -> str:
    """Record `<namespace>/<family>/<kind>-v1` into the local Minari root; returns its
    id. `pairs` replaces the kind's (start, goal) cell pairs (e.g. a stitching test's)."""
    import minari  # heavy: imported when a dataset is made

    if family not in FAMILIES:
        raise DatasetError(f"unknown maze family {family!r}; choose from {tuple(FAMILIES)}")
    maze, regime = parse_kind(kind)
    ds_id = ids.make(family, kind, namespace)
    if not make_room(ds_id, overwrite):
        return ds_id
    act = controller(family, behavior_dir, noise)
    pairs = pairs or cell_pairs(maze, regime)
    collectors = [minari.DataCollector(EvaluationGoal(make_env(family, maze, evaluation=False), EVAL_CELLS[maze][1]))
                  for _ in range(num_envs)]
    try:
        stats = record(collectors, act, pairs, steps, jax.random.fold_in(jax.random.key(seed),
                                                                                REGIMES.index(regime)), desc=ds_id)
        eval_spec = make_env(family, maze, evaluation=True).spec
        controller_name = "goal-reaching Ant SAC policy" if family == "antmaze" else f"PD controller (kp {KP}, kd {KD})"
        dataset = collectors[0].create_dataset(
            dataset_id=ds_id,
            eval_env=eval_spec,
            algorithm_name=f"waypoint planner on the maze grid + {controller_name}, behavior/mazes.py",
            author="iql-jax behavior/mazes.py",
            author_email="none",
            code_permalink="behavior/mazes.py",
            description=f"D4RL-style {family} {kind} (builder v{ids.version(family)}, behavior/mazes.py): {steps} steps, "
                        f"{stats['episodes']} episodes, {stats['success_episodes']} passing the evaluation goal; "
                        f"evaluation: start {EVAL_CELLS[maze][0]}, goal {EVAL_CELLS[maze][1]}, "
                        "terminating at the goal (return = success)",
            ref_min_score=0.0,
            ref_max_score=1.0,
        )
        for collector in collectors[1:]:
            collector.add_to_dataset(dataset)
    finally:
        for collector in collectors:
            collector.close()
    print(f"{ds_id}: {steps:,} steps, {stats['episodes']} episodes, {stats['success_episodes']} of them passing "
          "the evaluation goal")
    return ds_id


def ensure_dataset(ds_id: str, steps: int = 1_000_000, seed: int = 0) -> bool:
    """Build `local/antmaze/<kind>-v1` or `local/pointmaze/<kind>-v1` if it is not there yet.
    Returns True when it built one; False when the id is not such an id or already exists (a
    `-v0` set made by the earlier builder loads as any Minari dataset; a missing one is an error)."""
    import minari  # heavy: imported when a dataset is made

    parsed = ids.parse(ds_id)
    if parsed is None or parsed[0] not in FAMILIES:
        return False
    family, kind, version = parsed
    if version not in ("0", str(ids.version(family))) or ds_id in minari.list_local_datasets():
        return False
    parse_kind(kind)
    if version == "0":
        raise DatasetError(f"{ds_id} was made by an earlier maze builder that is no longer shipped; "
                           f"use {ids.make(family, kind)} (docs/mazes.md)")
    print(f"{ds_id} is not in the local Minari root {dataset_lib.minari_root()}; building it ({steps:,} steps: "
          f"{'~15 min for AntMaze' if family == 'antmaze' else 'a few minutes'} on a laptop CPU)")
    make_dataset(family, kind, "local", steps, seed)
    return True
