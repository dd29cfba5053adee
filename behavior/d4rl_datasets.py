"""D4RL's AntMaze datasets, made as D4RL made them, on D4RL's task (`behavior/d4rl_antmaze.py`).

    python -m tools.collect --env=d4rl-antmaze --datasets=umaze,umaze-diverse,medium-play
    local/d4rl-antmaze/<kind>-v1       (built on first use by the training scripts; behavior/ids.py)

D4RL's recipe (scripts/generation/generate_ant_maze_datasets.py and relabel_antmaze_rewards.py):

- a waypoint planner (`Planner`) steers a goal-reaching ant controller; the controller reads the
  direction to the waypoint scaled to 10 m (so it keeps walking through waypoints and past the
  goal), acts with a sample of its stochastic policy plus N(0, 0.2), clipped to [-1, 1];
- each episode is 1000 steps (`timeouts`), continuing: the ant is not stopped at the goal and a
  fallen ant is not reset; except `umaze-diverse`, whose episodes end when the ant reaches its
  commanded goal or the evaluation goal (within 0.5 m), the next starting anywhere: D4RL's
  umaze-diverse file holds one reward/terminal per arrival where every other set holds
  clusters (Farama-Foundation/D4RL issue #199);
- each episode is commanded to a goal drawn in one of the kind's goal cells by D4RL's noise rule;
  it starts at the origin (`umaze`) or anywhere in the maze (every other kind);
- rewards and terminals are relabelled to one evaluation goal per dataset, drawn by the
  evaluation env's rule: reward_t = terminal_t = 1[|xy_{t+1} - goal| <= 0.5], so the data
  holds clusters of terminal rows mid-episode, as D4RL's.

Kinds and their commanded goal cells: `umaze`: U_MAZE's goal cell (the map marks one);
`<maze>-play`: the goal cells D4RL's BIG_MAZE / HARDEST_MAZE mark (hand picked);
`<maze>-diverse`: any free cell (D4RL's goal sampler when a map marks none; D4RL's task list:
"diverse" datasets command random goal locations). The
metadata records the evaluation env (`D4RLAntMaze_*-v0`), reference scores (0, 1) and the
relabelling goal. The recipe is version 1 (`local/d4rl-antmaze/<kind>-v1`): umaze-diverse's
episodes end at a goal (its `-v0`, continuing and commanded to the goal cell only, is no longer
built); the other kinds' `-v0` ids are former names of the same data (behavior/ids.py).
"""

import collections
import os
import time

import gymnasium as gym
import jax
import numpy as np
from tqdm import tqdm

import dataset as dataset_lib
from dataset import DatasetError
from behavior import d4rl_antmaze as antmaze, ids
from behavior.datasets import SHIPPED, Behavior, make_policy, make_room

NAMESPACE = "local/d4rl-antmaze"
KINDS = ("umaze", "umaze-diverse", "medium-play", "medium-diverse", "large-play", "large-diverse")
ACTION_NOISE = 0.2  # generate_ant_maze_datasets.py:129-131, the --noisy sets
EPISODE_STEPS = 1000  # generate_ant_maze_datasets.py --max_episode_steps
CONTROLLER = os.path.join(SHIPPED, "d4rl_goal_ant")
CONTROLLER_ENV = "behavior.d4rl_antmaze:D4RLGoalAnt-v0"
# D4RL#199: one reward/terminal per arrival in that file; the generation loop resets on `done`
# (generate_ant_maze_datasets.py:146-150), raised within 0.5 m of the goal (goal_reaching_env.py:45-47).
ENDS_AT_GOAL = ("umaze-diverse",)


def dataset_id(kind: str) -> str:
    """The id the builder makes for `kind` (behavior/ids.py)."""
    return ids.make("d4rl-antmaze", kind)


def parse_kind(kind: str) -> tuple[str, bool, list]:
    """kind -> (maze, whether episodes start anywhere, the commanded goal cells)."""
    if kind not in KINDS:
        raise DatasetError(f"unknown D4RL AntMaze dataset kind {kind!r}; choose from {KINDS}")
    maze, _, regime = kind.partition("-")
    grid = antmaze.DATA_MAPS[maze]
    marked = [(r, c) for r, row in enumerate(grid) for c, v in enumerate(row) if v == antmaze.G]
    free = [(r, c) for r, row in enumerate(grid) for c, v in enumerate(row) if v != 1]
    goals = free if regime == "diverse" else marked
    return maze, regime != "", goals


def xy_to_cell(xy) -> tuple[int, int]:
    """The cell D4RL's planner believes a point is in (maze_env.py:208-212): int(1 + y / 4),
    int(1 + x / 4) after clamping x, y to >= 1e-4. It is half a cell off the walls' geometry
    (cell (1, 1) spans [-2, 2) but is read from [0, 4)): D4RL's data was made with it."""
    x, y = max(float(xy[0]), 1e-4), max(float(xy[1]), 1e-4)
    return int(1 + y / antmaze.SCALING), int(1 + x / antmaze.SCALING)


class Planner:
    """D4RL's waypoint planner (maze_env.py:306-377 `create_navigation_policy`): the next cell on a
    shortest path from the cell the ant is believed in (`xy_to_cell`) to the goal's cell, by a
    breadth-first search out of the goal cell; the waypoint is that cell's centre plus U(0, 1)
    per axis, drawn anew at every step, or the goal itself once the next cell is the goal's."""

    def __init__(self, maze: str):
        self.free = antmaze.walls(maze) == 0
        self._cache: dict = {}

    def next_cell(self, here: tuple[int, int], goal: tuple[int, int]) -> tuple[int, int]:
        """D4RL's `_get_best_next_rowcol`: cells are expanded out of the goal in breadth-first
        order (left, right, down, up); the first whose neighbour is `here` is the next cell."""
        if here == goal:
            return goal
        if (here, goal) in self._cache:
            return self._cache[here, goal]
        visited, frontier = set(), collections.deque([goal])
        rows, cols = self.free.shape
        while frontier:
            nxt = collections.deque()
            for cell in frontier:
                visited.add(cell)
                r, c = cell
                for n in ((r, c - 1), (r, c + 1), (r + 1, c), (r - 1, c)):
                    if n == here:
                        self._cache[here, goal] = cell
                        return cell
                    if 0 <= n[0] < rows and 0 <= n[1] < cols and self.free[n] and n not in visited:
                        nxt.append(n)
            frontier = nxt
        raise ValueError(f"no path from cell {here} to cell {goal}")

    def waypoint(self, xy, goal_xy, rng: np.random.Generator) -> np.ndarray:
        goal = xy_to_cell(goal_xy)
        cell = self.next_cell(xy_to_cell(xy), goal)
        if cell == goal:
            return np.asarray(goal_xy, np.float64)
        return antmaze.cell_xy(cell) + rng.uniform(0.0, 0.25 * antmaze.SCALING, 2)


def controller(behavior_dir: str = CONTROLLER, noise: float = ACTION_NOISE, step: int | None = None):
    """(D4RL observations (n, 29), waypoints (n, 2), key) -> actions: the goal-reaching ant's
    policy sample plus N(0, noise), clipped to [-1, 1]; noise 0 is the policy sample alone."""
    if not os.path.exists(os.path.join(behavior_dir, "behavior.json")):
        raise DatasetError(
            f"no goal-reaching controller for D4RL's ant in {behavior_dir}. Train one with `python -m "
            f"tools.train_behavior --env={CONTROLLER_ENV} --workdir=runs/behavior/d4rl_goal_ant` (resumable) "
            "and pass --behavior=runs/behavior/d4rl_goal_ant to tools.collect")
    behavior = Behavior(behavior_dir)
    policy = make_policy(behavior, step or behavior.expert["step"], behavior.meta["action_dim"])

    def act(observations: np.ndarray, waypoints: np.ndarray, key) -> np.ndarray:
        policy_key, noise_key = jax.random.split(key)
        actions = np.asarray(policy(antmaze.controller_input(observations, waypoints), policy_key))
        actions = actions + noise * np.asarray(jax.random.normal(noise_key, actions.shape))
        return np.clip(actions, -1.0, 1.0).astype(np.float32)

    return act


def drive(envs, act, starts_goals, steps: int, key, episode_steps: int, desc: str, end_at_goal: bool = False):
    """Step `envs` in lockstep under the planner and `act`, each episode from
    `starts_goals(env_index, episode_number, rng)` -> (start_xy or None, commanded goal), ended
    by the env (evaluation), after `episode_steps`, or (`end_at_goal`) at the first row within
    0.5 m of the commanded goal or inside the rewarded one.
    Returns the finished episodes as dicts of arrays (observations T + 1, actions, rewards,
    terminations, truncations, goals, flipped). With `steps` None, every env runs one episode."""
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel())  # waypoint jitter, starts, goals
    planners = [Planner(e.unwrapped.maze) for e in envs]
    count = [0]

    def reset(j):
        start, goal = starts_goals(j, count[0], rng)
        seed = int(rng.integers(2**31 - 1))
        count[0] += 1
        obs, info = envs[j].reset(seed=seed, options={"start_xy": start, "goal_xy": goal})
        return {"observations": [obs], "actions": [], "rewards": [], "terminations": [], "truncations": [],
                "goal": info["goal"], "flipped": False}

    episodes, running = [reset(j) for j in range(len(envs))], list(range(len(envs)))
    finished, done, call = [], 0, 0
    total = steps if steps is not None else len(envs) * episode_steps
    with tqdm(total=total, unit="step", desc=desc, dynamic_ncols=True, mininterval=2.0) as bar:
        while running and (steps is None or done < steps):
            active = running if steps is None else running[: steps - done]
            obs = np.stack([episodes[j]["observations"][-1] for j in active])
            waypoints = np.stack([planners[j].waypoint(o[:2], episodes[j]["goal"], rng) for j, o in zip(active, obs)])
            actions = act(obs, waypoints, jax.random.fold_in(key, call))
            call += 1
            for j, action in zip(active, actions):
                ep = episodes[j]
                next_obs, reward, terminated, truncated, _ = envs[j].step(action)
                # An arrival at the commanded goal outside the rewarded one ends the episode unrewarded:
                # a truncation (the mask stays 1), not a terminal.
                at_commanded = np.linalg.norm(next_obs[:2] - ep["goal"]) <= antmaze.SUCCESS_RADIUS
                arrived = end_at_goal and (reward > 0 or at_commanded)
                truncated = truncated or len(ep["actions"]) + 1 >= episode_steps or (arrived and reward == 0)
                for name, value in (("observations", next_obs), ("actions", action), ("rewards", reward),
                                    ("terminations", reward > 0), ("truncations", truncated and not terminated)):
                    ep[name].append(value)
                ep["flipped"] |= envs[j].unwrapped.flipped()
                if (envs[j].unwrapped.evaluation and terminated) or arrived or truncated:
                    finished.append({k: np.asarray(v) for k, v in ep.items()})
                    if steps is None:
                        running.remove(j)
                    else:
                        episodes[j] = reset(j)
            done += len(active)
            bar.update(len(active))
    for j in running if steps is not None else ():  # episodes cut by the end of the recording
        ep = episodes[j]
        if ep["actions"]:
            ep["truncations"][-1] = not ep["terminations"][-1]
            finished.append({k: np.asarray(v) for k, v in ep.items()})
    return finished


def success_rate(maze: str, act, episodes: int, seed: int) -> dict:
    """The planner + controller on D4RL's evaluation task in `maze`: {'success', 'flip_rate'}
    over `episodes` episodes (the evaluation env's own start and goal draws)."""
    envs = [antmaze.D4RLAntMaze(maze) for _ in range(episodes)]
    eps = drive(envs, act, lambda j, n, rng: (None, None), None, jax.random.key(seed),
                antmaze.HORIZONS[maze], f"{maze} evaluation")
    for e in envs:
        e.close()
    return {"success": float(np.mean([e["rewards"].any() for e in eps])),
            "flip_rate": float(np.mean([e["flipped"] for e in eps]))}


def make_dataset(kind: str, steps: int = 1_000_000, seed: int = 0, num_envs: int = 16,
                 behavior_dir: str | None = None, overwrite: bool = False, episode_steps: int = EPISODE_STEPS,
                 step: int | None = None) -> str:
    """Record `dataset_id(kind)` into the local Minari root (module docstring)."""
    import minari  # heavy: imported when a dataset is made

    maze, anywhere, goal_cells = parse_kind(kind)
    ds_id = dataset_id(kind)
    if not make_room(ds_id, overwrite):
        return ds_id
    act = controller(behavior_dir or CONTROLLER, step=step)
    key = jax.random.fold_in(jax.random.key(seed), KINDS.index(kind))
    goal_key, drive_key = jax.random.split(key)
    # One evaluation goal per dataset, by the evaluation env's rule (relabel_antmaze_rewards.py:17-18).
    reward_goal = antmaze.goal_noise(np.random.default_rng(np.asarray(jax.random.key_data(goal_key)).ravel()),
                                     antmaze.EVAL_GOAL_CELLS[maze])
    envs = [antmaze.D4RLAntMaze(maze, evaluation=False, reward_goal=reward_goal) for _ in range(num_envs)]

    def starts_goals(j, n, rng):
        start = antmaze.reset_location(rng, maze) if anywhere else None
        return start, antmaze.goal_noise(rng, goal_cells[rng.integers(len(goal_cells))])

    began = time.time()
    eps = drive(envs, act, starts_goals, steps, drive_key, episode_steps, ds_id, end_at_goal=kind in ENDS_AT_GOAL)
    buffers = [minari.data_collector.EpisodeBuffer(
        id=i, observations=e["observations"], actions=e["actions"], rewards=e["rewards"],
        terminations=e["terminations"], truncations=e["truncations"], infos={"goal": np.repeat(e["goal"][None], len(e["observations"]), 0)}) for i, e in enumerate(eps)]
    passing = sum(bool(e["rewards"].any()) for e in eps)
    rows = int(sum(e["rewards"].sum() for e in eps))
    data_spec = gym.envs.registration.EnvSpec(  # the env the data was recorded in
        id=f"D4RLAntMazeData_{maze}-v0", entry_point="behavior.d4rl_antmaze:D4RLAntMaze", max_episode_steps=EPISODE_STEPS,
        kwargs={"maze": maze, "evaluation": False, "reward_goal": [float(v) for v in reward_goal]})
    eval_id = antmaze.ENV_IDS[maze]
    description = (f"D4RL's AntMaze {kind} on D4RL's task (behavior/d4rl_datasets.py): {sum(len(e['actions']) for e in eps)} "
                   f"steps, {len(eps)} episodes, {passing} passing the evaluation goal, {rows} rows inside it; "
                   f"rewards and terminals relabelled to the evaluation goal {np.round(reward_goal, 4).tolist()}; "
                   f"evaluation env {eval_id}")
    minari.create_dataset_from_buffers(
        dataset_id=ds_id, buffer=buffers, env=data_spec, eval_env=eval_id,
        algorithm_name="D4RL's waypoint planner + a goal-reaching ant SAC policy, behavior/d4rl_datasets.py",
        author="iql-jax behavior/d4rl_datasets.py", author_email="none", code_permalink="behavior/d4rl_datasets.py",
        action_space=envs[0].action_space, observation_space=envs[0].observation_space,
        ref_min_score=0.0, ref_max_score=1.0, description=description)
    for e in envs:
        e.close()
    print(f"{ds_id}: {description}; built in {time.time() - began:.0f} s")
    return ds_id


def ensure_dataset(ds_id: str, steps: int = 1_000_000, seed: int = 0) -> bool:
    """Build `local/d4rl-antmaze/<kind>-v<version>` if it is missing. True when it built one; False
    for any other namespace or a set already there; an error for a version the builder does not make."""
    import minari  # heavy: imported when a dataset is made

    prefix, _, name = ds_id.rpartition("/")
    kind, _, _ = name.rpartition("-v")
    if prefix != NAMESPACE or ds_id in minari.list_local_datasets():
        return False
    parse_kind(kind)
    if ds_id != dataset_id(kind):
        raise DatasetError(f"{ds_id} is not in the local Minari root {dataset_lib.minari_root()} and the builder "
                           f"makes {dataset_id(kind)} (behavior/d4rl_datasets.py dataset_id); train on that id")
    print(f"{ds_id} is not in the local Minari root {dataset_lib.minari_root()}; building it ({steps:,} steps, "
          "~7 min on one CPU core)")
    make_dataset(kind, steps, seed)
    return True
