"""D4RL's AntMaze on today's MuJoCo (behavior/d4rl_antmaze.py) and its datasets
(behavior/d4rl_datasets.py): the model's parameters, the time step, the start, goal and success
rules, the planner, and a tiny dataset with D4RL's relabelling."""

import types

import gymnasium as gym
import jax
import minari
import mujoco
import numpy as np
import pytest
from conftest import ROOT, private_minari_root, read_csv, run_main
from test_mazes import untrained_ant_policy

import dataset as dataset_lib
import evaluation
import train_offline
from behavior import d4rl_antmaze as antmaze
from behavior import d4rl_datasets, ids
from configs import iql_antmaze
from harness import sources
from dataset import DatasetError


@pytest.fixture(scope="module")
def d4rl_root(tmp_path_factory):
    yield from private_minari_root(tmp_path_factory, "d4rl_antmaze")


def test_model_has_d4rl_parameters():
    model = antmaze.D4RLAntMaze("umaze").model
    assert model.opt.timestep == 0.02 and model.opt.integrator == mujoco.mjtIntegrator.mjINT_RK4
    np.testing.assert_array_equal(model.actuator_gear[:, 0], np.ones(8))
    np.testing.assert_array_equal(model.actuator_ctrlrange, np.tile([-30.0, 30.0], (8, 1)))
    ant = [i for i in range(model.ngeom) if model.geom_bodyid[i] > 0]  # the ant's own geoms
    np.testing.assert_allclose(model.geom_solref[ant], np.tile([0.02, 1.0], (len(ant), 1)))
    np.testing.assert_allclose(model.geom_solimp[ant, :3], np.tile([0.8, 0.8, 0.01], (len(ant), 1)))
    # Gymnasium's ant, which the edit starts from, differs in each of these.
    gym_ant = gym.make("Ant-v5").unwrapped.model
    assert gym_ant.opt.timestep == 0.01 and gym_ant.actuator_gear[0, 0] == 150.0


def test_one_step_is_a_tenth_of_a_second_at_30_nm_per_unit_action():
    env = antmaze.D4RLAntMaze("umaze")
    env.reset(seed=0)
    before = env.data.time
    env.step(np.full(8, 0.5))
    assert env.dt == pytest.approx(0.1) and env.data.time - before == pytest.approx(0.1)
    np.testing.assert_allclose(env.data.actuator_force, np.full(8, 15.0))  # 0.5 x 30 Nm
    env.step(np.full(8, 3.0))  # clipped to the unit box first, as D4RL's NormalizedBoxEnv
    np.testing.assert_allclose(env.data.actuator_force, np.full(8, 30.0))


def test_observation_is_qpos_15_and_qvel_14_without_the_goal():
    env = antmaze.D4RLAntMaze("medium")
    obs, info = env.reset(seed=3)
    obs, *_ = env.step(env.action_space.sample())
    assert obs.shape == (29,) and env.observation_space.shape == (29,)
    np.testing.assert_array_equal(obs, np.concatenate([env.data.qpos[:15], env.data.qvel[:14]]))


def test_evaluation_start_is_the_origin_with_d4rl_noise():
    env = antmaze.D4RLAntMaze("umaze")
    starts = np.stack([env.reset(seed=s)[0] for s in range(200)])
    qpos0 = env.init_qpos
    assert qpos0[2] == pytest.approx(0.75)  # the torso's height in the model
    # x, y, z and the joints: qpos0 + U(-0.1, 0.1) (the quaternion is normalised by MuJoCo).
    for i in (0, 1, 2, *range(7, 15)):
        offsets = starts[:, i] - qpos0[i]
        assert offsets.min() >= -0.1 and offsets.max() <= 0.1 and offsets.max() - offsets.min() > 0.15
    assert 0.07 < starts[:, 15:].std() < 0.13  # qvel ~ N(0, 0.1)


def test_goal_draws_follow_d4rls_rule():
    rng = np.random.default_rng(0)
    for maze, cell, centre in (("umaze", (3, 1), (0.0, 8.0)), ("medium", (6, 6), (20.0, 20.0)),
                               ("large", (7, 9), (32.0, 24.0))):
        np.testing.assert_array_equal(antmaze.cell_xy(antmaze.EVAL_GOAL_CELLS[maze]), centre)
        offsets = np.stack([antmaze.goal_noise(rng, cell) for _ in range(2000)]) - np.asarray(centre)
        # U(0, 1) + U(0, 0.5) per axis: in [0, 1.5], mean 0.75.
        assert offsets.min() >= 0.0 and offsets.max() <= 1.5
        np.testing.assert_allclose(offsets.mean(axis=0), [0.75, 0.75], atol=0.03)
    # The evaluation env redraws its goal in the goal cell every episode.
    env = antmaze.D4RLAntMaze("large")
    goals = np.stack([env.reset(seed=s)[1]["goal"] for s in range(20)])
    assert len(np.unique(goals[:, 0])) == 20 and np.all((goals >= [32.0, 24.0]) & (goals <= [33.5, 25.5]))


def test_multi_start_draws_free_non_goal_cells():
    rng = np.random.default_rng(1)
    grid = antmaze.DATA_MAPS["medium"]
    cells = set()
    for _ in range(3000):
        xy = antmaze.reset_location(rng, "medium")
        # The draw is a cell centre plus U(0, 1) per axis.
        col, row = np.floor((xy + antmaze.SCALING * 1.5) / antmaze.SCALING).astype(int)  # cell (1, 1) spans [-2, 2)
        centre = antmaze.cell_xy((row, col))
        assert np.all(xy - centre >= 0.0) and np.all(xy - centre <= 1.0)
        cells.add((row, col))
    free = {(r, c) for r, row in enumerate(grid) for c, v in enumerate(row) if v in (0, antmaze.R)}
    assert cells == free  # every free cell, never a wall or one of the data map's goal cells


def test_success_is_counted_within_half_a_metre():
    env = antmaze.D4RLAntMaze("umaze")
    env.reset(seed=0)
    for distance, success in ((0.49, True), (0.51, False)):
        env.reset(seed=0)
        env.data.qpos[:2] = env.goal + [distance, 0.0]
        env.data.qvel[:] = 0.0
        mujoco.mj_forward(env.model, env.data)
        # The ant moves a little in one step: check the rule on the position it ends at.
        obs, reward, terminated, truncated, info = env.step(np.zeros(8))
        inside = np.linalg.norm(obs[:2] - env.goal) <= 0.5
        assert reward == float(inside) and terminated == inside and info["success"] == inside
        assert inside == success or abs(np.linalg.norm(obs[:2] - env.goal) - 0.5) < 0.02


def test_registered_ids_have_d4rls_horizons():
    for maze, steps in (("umaze", 700), ("medium", 1000), ("large", 1000)):
        env = gym.make(antmaze.ENV_IDS[maze])
        assert env.spec.max_episode_steps == steps and env.unwrapped.maze == maze


def test_walls_are_d4rls_blocks():
    model = antmaze.D4RLAntMaze("umaze").model
    blocks = [model.geom(i) for i in range(model.ngeom) if model.geom(i).name.startswith("block_")]
    assert len(blocks) == int(antmaze.walls("umaze").sum()) == 18  # 16 border blocks, 2 inner
    block = model.geom("block_2_1")  # the umaze's inner wall, between start and goal corridors
    np.testing.assert_allclose(block.pos, [0.0, 4.0, 1.0])
    np.testing.assert_allclose(block.size, [2.0, 2.0, 1.0])


def test_planner_follows_d4rls_cells_and_jitter():
    # D4RL's cell rule is half a cell off the walls: x in [0, 4) is column 1.
    assert d4rl_datasets.xy_to_cell((0.0, 0.0)) == (1, 1) and d4rl_datasets.xy_to_cell((3.9, 0.0)) == (1, 1)
    assert d4rl_datasets.xy_to_cell((4.0, 0.0)) == (1, 2) and d4rl_datasets.xy_to_cell((-1.5, -1.5)) == (1, 1)
    planner = d4rl_datasets.Planner("umaze")
    assert planner.next_cell((1, 1), (3, 1)) == (1, 2)
    assert planner.next_cell((1, 3), (3, 1)) == (2, 3)
    assert planner.next_cell((3, 2), (3, 1)) == (3, 1)
    rng = np.random.default_rng(0)
    goal = np.array([0.7, 8.6])
    points = np.stack([planner.waypoint((0.5, 0.5), goal, rng) for _ in range(500)])
    offsets = points - antmaze.cell_xy((1, 2))  # the next cell's centre plus U(0, 1) per axis
    assert offsets.min() >= 0.0 and offsets.max() <= 1.0 and offsets.std() > 0.25
    np.testing.assert_array_equal(planner.waypoint((1.0, 8.0), goal, rng), goal)  # in the goal's cell


def test_controller_input_commands_ten_metres_in_the_heading_frame():
    env = antmaze.D4RLAntMaze("umaze")
    obs, _ = env.reset(seed=0)
    inputs = antmaze.controller_input(obs[None], np.array([[obs[0] + 1.0, obs[1]]]))[0]
    assert inputs.shape == (29,) and np.linalg.norm(inputs[-2:]) == pytest.approx(10.0, rel=1e-5)
    np.testing.assert_allclose(inputs[:13], obs[2:15], rtol=1e-6)  # the body, as D4RL's obs[2:]


def test_dataset_relabels_to_the_evaluation_goal(d4rl_root, tmp_path, monkeypatch):
    policy = untrained_ant_policy(tmp_path / "controller")
    ds_id = d4rl_datasets.make_dataset("umaze-diverse", steps=1200, num_envs=3, behavior_dir=policy,
                                       episode_steps=300)
    mds = minari.load_dataset(ds_id)
    goal = np.asarray(mds.recover_environment().unwrapped.reward_goal)
    assert np.all(goal - [0.0, 8.0] >= 0.0) and np.all(goal - [0.0, 8.0] <= 1.5)
    episodes = list(mds.iterate_episodes())
    # 3 envs x 400 steps: 300-step episodes, ones ended at their commanded goal (umaze-diverse's rule),
    # and those cut by the end of the recording.
    assert mds.total_steps == 1200 and len(episodes) > 6
    for ep in episodes[:-3]:
        commanded = ep.infos["goal"][0]
        assert len(ep.actions) == 300 or np.linalg.norm(ep.observations[-1, :2] - commanded) <= 0.5
    for ep in episodes:
        inside = np.linalg.norm(ep.observations[1:, :2] - goal, axis=1) <= 0.5
        np.testing.assert_array_equal(ep.rewards, inside.astype(float))
        np.testing.assert_array_equal(ep.terminations, inside)  # terminal rows mid-episode, as D4RL's
        assert ep.truncations[-1] != ep.terminations[-1] and not ep.truncations[:-1].any()
        assert ep.observations.shape[1] == 29
    # Some episodes start far from the origin (umaze-diverse starts anywhere).
    assert max(np.linalg.norm(ep.observations[0, :2]) for ep in episodes) > 3.0
    data, info = dataset_lib.load_dataset(ds_id, "antmaze", download=False)
    assert data.observations.shape == (1200, 29) and (info.ref_min_score, info.ref_max_score) == (0.0, 1.0)
    env = info.make_env()
    assert env.spec.id == "D4RLAntMaze_UMaze-v0" and env.spec.max_episode_steps == 700
    result = evaluation.evaluate(lambda obs: np.zeros((len(obs), 8)), info.make_env, 2, seed=0)
    assert result["success"] == 0.0 and result["length"] == 700 and result["flip_rate"] == 0.0  # standing still
    # IQL trains on it and evaluates in D4RL's task, here with a time limit of 50 steps.
    run_main(train_offline, f"--config={ROOT}/configs/iql_antmaze.py:smoke", f"--dataset={ds_id}",
             f"--workdir={tmp_path / 'run'}", "--config.eval_episodes=2", "--config.eval_max_episode_steps=50")
    rows = read_csv(tmp_path / "run" / "eval.csv")
    assert [r["step"] for r in rows] == ["100", "200"] and all(r["success_rate"] == "0.0" for r in rows)
    assert all(0.0 <= float(r["flip_rate"]) <= 1.0 for r in rows)
    config = iql_antmaze.get_config("smoke")
    config.eval_max_episode_steps = 1400  # the same 70 s at Gymnasium's 0.05 s per step
    *_, make_env, notes, _ = sources.load_data(types.SimpleNamespace(dataset=ds_id, env_name=None), config)
    assert make_env().spec.max_episode_steps == 1400 and any("1400" in n for n in notes)
    # One id scheme (behavior/ids.py): an id the set had before loads it, with a note, and a set
    # stored under a former name loads from there.
    assert sources.ensure_local(ds_id) == (ds_id, [])
    monkeypatch.setattr(ids, "FORMER", {"local/d4rl-antmaze/umaze-diverse-v7": ds_id})
    load, notes = sources.ensure_local("local/d4rl-antmaze/umaze-diverse-v7")  # a former name: the current set
    assert load == ds_id and "same data" in notes[0]
    monkeypatch.setattr(ids, "FORMER", {ds_id: "local/d4rl-antmaze/umaze-diverse-v8"})
    load, notes = sources.ensure_local("local/d4rl-antmaze/umaze-diverse-v8")  # stored under its former name
    assert load == ds_id and "loading " + ds_id in notes[0]


def test_umaze_diverse_episodes_end_at_a_goal():
    """D4RL's umaze-diverse file holds one reward/terminal per arrival (D4RL issue #199): with
    `end_at_goal` an ant placed at the rewarded goal gives one-row episodes, each rewarded and
    terminal, and one placed at its commanded goal elsewhere one-row unrewarded truncations;
    without it one continuing episode rewarded at every row."""
    goal, elsewhere = np.array([0.5, 8.5]), np.array([8.5, 0.5])
    still = lambda obs, waypoints, key: np.zeros((len(obs), 8), np.float32)  # noqa: E731

    def run(start_goal, **kw):
        env = antmaze.D4RLAntMaze("umaze", evaluation=False, reward_goal=goal)
        return d4rl_datasets.drive([env], still, lambda j, n, rng: start_goal, 5, jax.random.key(0), 1000, "t", **kw)

    ended = run((goal, goal), end_at_goal=True)
    assert [len(e["actions"]) for e in ended] == [1] * 5
    assert all(e["rewards"].tolist() == [1.0] and e["terminations"].tolist() == [True]
               and e["truncations"].tolist() == [False] for e in ended)
    unrewarded = run((elsewhere, elsewhere), end_at_goal=True)
    assert len(unrewarded) == 5 and all(e["rewards"].tolist() == [0.0] and e["truncations"].tolist() == [True]
                                        and not e["terminations"].any() for e in unrewarded)
    continuing = run((goal, goal))
    assert len(continuing) == 1 and continuing[0]["rewards"].tolist() == [1.0] * 5


def test_kinds_and_errors(tmp_path):
    assert d4rl_datasets.parse_kind("umaze")[:2] == ("umaze", False)
    assert d4rl_datasets.parse_kind("umaze")[2] == [(3, 1)]
    u_free = [(1, 1), (1, 2), (1, 3), (2, 3), (3, 1), (3, 2), (3, 3)]
    assert d4rl_datasets.parse_kind("umaze-diverse") == ("umaze", True, u_free)
    assert d4rl_datasets.parse_kind("medium-play") == ("medium", True, [(2, 6), (5, 1), (6, 5)])
    maze, anywhere, goals = d4rl_datasets.parse_kind("large-diverse")
    assert len(goals) == int((antmaze.walls("large") == 0).sum())
    with pytest.raises(DatasetError, match="umaze-diverse"):
        d4rl_datasets.parse_kind("umaze-play")
    with pytest.raises(DatasetError, match="tools.train_behavior"):
        d4rl_datasets.controller(str(tmp_path / "none"))
    assert d4rl_datasets.dataset_id("umaze-diverse") == "local/d4rl-antmaze/umaze-diverse-v1"
    assert d4rl_datasets.dataset_id("medium-play") == "local/d4rl-antmaze/medium-play-v1"
    assert ids.current("local/d4rl-antmaze/medium-play-v0") == "local/d4rl-antmaze/medium-play-v1"
    assert ids.current("local/d4rl-antmaze/umaze-diverse-v0") == "local/d4rl-antmaze/umaze-diverse-v0"  # another recipe
    assert ids.make("hopper", "medium") == "local/hopper/medium-v0" and ids.make("pointmaze", "umaze").endswith("-v1")
    assert not d4rl_datasets.ensure_dataset("local/antmaze/umaze-v1")
    with pytest.raises(DatasetError, match="umaze-diverse-v1"):  # a version the builder no longer makes
        d4rl_datasets.ensure_dataset("local/d4rl-antmaze/umaze-diverse-v0")


def test_shipped_controller_drives_through_the_umaze():
    """The shipped controller with D4RL's action noise, steered by D4RL's planner, solves D4RL's
    umaze evaluation task (measured 97/100 episodes; an untrained actor solves none)."""
    result = d4rl_datasets.success_rate("umaze", d4rl_datasets.controller(), episodes=5, seed=0)
    assert result["success"] >= 0.6, result


def test_controller_task_rewards_progress_and_ends_on_a_flip():
    env = antmaze.D4RLGoalAnt()
    obs, _ = env.reset(seed=0)
    assert obs.shape == (29,) and np.linalg.norm(obs[-2:]) == pytest.approx(10.0, rel=1e-5)
    # Standing still: no progress, healthy, no control cost.
    _, reward, terminated, _, _ = env.step(np.zeros(8))
    assert not terminated and abs(reward - antmaze.HEALTHY_REWARD) < 0.5
    # Turned over: the episode ends.
    env.data.qpos[3:7] = [0.0, 1.0, 0.0, 0.0]  # 180 degrees about x
    env.data.qpos[2] = 0.5
    mujoco.mj_forward(env.model, env.data)
    *_, terminated, _, info = env.step(np.zeros(8))
    assert terminated and info["flipped"]


class _TurnedOver(gym.Wrapper):
    """D4RL's umaze evaluation env whose ant starts on its back (180 degrees about x)."""

    def reset(self, **kwargs):
        _, info = self.env.reset(**kwargs)
        ant = self.env.unwrapped
        ant.data.qpos[3:7] = [0.0, 1.0, 0.0, 0.0]
        ant.data.qpos[2] = 0.5
        mujoco.mj_forward(ant.model, ant.data)
        return ant._observe(), info


def test_evaluation_counts_episodes_whose_ant_turned_over():
    built = []

    def make_env():  # the first of the three episodes starts on its back
        env = gym.wrappers.TimeLimit(antmaze.D4RLAntMaze("umaze"), 20)
        built.append(env)
        return _TurnedOver(env) if len(built) == 1 else env

    result = evaluation.evaluate(lambda obs: np.zeros((len(obs), 8)), make_env, 3, seed=0)
    np.testing.assert_array_equal(result["flips"], [1.0, 0.0, 0.0])
    assert result["flip_rate"] == pytest.approx(1 / 3) and result["success"] == 0.0 and result["length"] == 20
    # Envs that report no flips give none.
    result = evaluation.evaluate(lambda obs: np.zeros((len(obs), 1)),
                                 lambda: gym.make("Pendulum-v1", max_episode_steps=5), 2, seed=0)
    assert result["flips"] is None and result["flip_rate"] is None


def test_an_ant_on_its_back_is_flipped_in_the_env_and_in_its_observations():
    env = antmaze.D4RLAntMaze("umaze")
    upright, _ = env.reset(seed=0)
    assert not env.flipped() and not antmaze.upside_down(upright)
    env.data.qpos[3:7] = [0.0, 1.0, 0.0, 0.0]  # half a turn about x: on its back
    assert env.flipped() and antmaze.upside_down(env.data.qpos) and antmaze.upside_down(env._observe())
    tilted = upright.copy()
    tilted[3:7] = [np.cos(np.pi / 8), np.sin(np.pi / 8), 0.0, 0.0]  # 45 degrees about x: still upright
    assert not antmaze.upside_down(tilted)
