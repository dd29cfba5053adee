"""AntMaze and PointMaze: datasets built by behavior/mazes.py, flattened dict observations,
D4RL's rewards and terminals, success counting and smoke runs."""

import json
import os

import jax
import jax.numpy as jnp
import minari
import numpy as np
import pytest
from conftest import ROOT, private_minari_root, read_csv, run_main

import dataset as dataset_lib
import evaluation
import train_finetune
import train_offline
from behavior import goal_ant, mazes
from behavior.datasets import Behavior
from behavior.sac import TanhGaussianActor
from harness import outputs
from dataset import DatasetError

S, M, G = (1, 1), (2, 3), (3, 1)  # umaze: D4RL's start and goal, and the corridor between


@pytest.fixture(scope="module")
def maze_root(tmp_path_factory):
    yield from private_minari_root(tmp_path_factory, "mazes")


def untrained_ant_policy(folder) -> str:
    """A behavior folder holding an untrained goal-reaching Ant actor (29 inputs, 8 actions)."""
    params = TanhGaussianActor((32, 32), 8).init(jax.random.key(0), jnp.zeros((1, 29)))["params"]
    os.makedirs(folder / "snapshots")
    outputs.save_pytree(str(folder / "snapshots" / "step_0001000.msgpack"), params)
    (folder / "behavior.json").write_text(json.dumps({"env": "GoalReachingAnt-v0", "hidden_dims": [32, 32],
                                                      "obs_dim": 29, "action_dim": 8, "start_steps": 0}))
    (folder / "snapshots.json").write_text(json.dumps([{"step": 1000, "return": 0.0}]))
    return str(folder)


def pd_policy(maze: str):
    """A flat-observation policy: the planner + PD controller (achieved, desired, x y vx vy)."""
    planner = mazes.Planner(mazes.make_env("pointmaze", maze).unwrapped.maze)
    controller = mazes.controller("pointmaze", noise=0.0)

    def policy(flat):
        targets = np.stack([planner.waypoint(row[0:2], row[2:4]) for row in flat])
        return controller({"observation": flat[:, 4:8]}, targets, jax.random.key(0))

    return policy


def test_pointmaze_dataset_flattened_with_d4rl_rewards_and_terminals(maze_root):
    ds_id = mazes.make_dataset("pointmaze", "umaze", steps=2000, num_envs=4)
    data, info = dataset_lib.load_dataset(ds_id, "antmaze", download=False)
    episode = next(minari.load_dataset(ds_id).iterate_episodes())
    # Flattened in the space's key order: achieved_goal (2), desired_goal (2), observation (4).
    assert data.observations.shape == (2000, 8)
    first = np.concatenate([episode.observations[k][0] for k in ("achieved_goal", "desired_goal", "observation")])
    np.testing.assert_allclose(np.asarray(data.observations[0]), first, rtol=1e-6)
    # The observed goal is the evaluation goal, in D4RL's goal cell (3, 1) = (-1, -1) +- 0.25.
    assert np.all(np.abs(episode.observations["desired_goal"] - np.array([-1.0, -1.0])) <= 0.25 + 1e-6)
    rewards, masks = np.asarray(data.rewards), np.asarray(data.masks)
    assert set(np.unique(rewards)) == {-1.0, 0.0}  # r - 1 of the sparse 0/1 reward
    np.testing.assert_array_equal(masks, (rewards == -1.0).astype(np.float32))  # terminal where r = 1
    assert (info.ref_min_score, info.ref_max_score) == (0.0, 1.0)
    # The dataset's evaluation env observes the same 8 flat features and ends at the goal.
    env = info.make_env()
    assert env.observation_space.shape == (8,)
    result = evaluation.evaluate(pd_policy("umaze"), info.make_env, 4, seed=0)
    assert result["success"] == 1.0 and result["return"] == 1.0  # return = success: score 100 x rate
    still = evaluation.evaluate(lambda obs: np.zeros((len(obs), 2)), info.make_env, 4, seed=0)
    assert still["success"] == 0.0 and still["return"] == 0.0 and still["length"] == 300


@pytest.mark.slow  # builds an Ant dataset, then trains and fine-tunes
def test_antmaze_dataset_smoke_offline_and_finetune(maze_root, tmp_path):
    ds_id = mazes.make_dataset("antmaze", "umaze", steps=1500, num_envs=3,
                                    behavior_dir=untrained_ant_policy(tmp_path / "ant"))
    data, _ = dataset_lib.load_dataset(ds_id, "antmaze", download=False)
    assert data.observations.shape == (1500, 31)  # achieved 2 + desired 2 + the ant's 27
    # Three envs side by side, 500 steps each: three episodes, all cut short of the 1000-step limit.
    np.testing.assert_array_equal(np.flatnonzero(np.asarray(data.dones)), [499, 999, 1499])
    run_main(train_offline, f"--config={ROOT}/configs/iql_antmaze.py:smoke", f"--dataset={ds_id}",
             f"--workdir={tmp_path / 'offline'}", "--config.eval_episodes=2")
    rows = read_csv(tmp_path / "offline" / "eval.csv")
    assert [r["step"] for r in rows] == ["100", "200"] and all(r["success_rate"] == "0.0" for r in rows)
    summary = json.loads((tmp_path / "offline" / "summary.json").read_text())
    assert summary["last_success_rate_mean"] == 0.0 and summary["metric"] == "normalized_score"
    run_main(train_finetune, f"--config={ROOT}/configs/iql_antmaze_finetune.py:smoke", f"--dataset={ds_id}",
             f"--workdir={tmp_path / 'finetune'}", "--config.eval_episodes=2", "--config.online_steps=300",
             "--config.eval_interval=300", "--config.log_interval=100")
    rows = read_csv(tmp_path / "finetune" / "eval.csv")
    assert rows[-1]["phase"] == "online" and rows[-1]["env_steps"] == "300" and rows[-1]["success_rate"] == "0.0"
    summary = json.loads((tmp_path / "finetune" / "summary.json").read_text())
    assert summary["steps"] == 100 + 300 and summary["online_env_steps"] == 300


@pytest.mark.slow  # training that cannot shrink: 30k steps of data, 12k updates of two members
def test_iql_stitches_where_bc_cannot(maze_root, tmp_path):
    """PointMaze umaze with episodes S -> M, M -> S and M -> G only: no episode goes from the
    start to the goal. From M the data goes both ways; IQL takes the way to the goal, behavior
    cloning averages the two."""
    ds_id = mazes.make_dataset("pointmaze", "umaze", namespace="stitch", steps=30000, num_envs=8,
                                    pairs=[(S, M), (M, S), (M, G)])
    episodes = list(minari.load_dataset(ds_id).iterate_episodes())
    assert not any(np.linalg.norm(e.observations["achieved_goal"][0] - [-1, 1]) < 0.5 and e.rewards.max() > 0
                   for e in episodes)  # no episode from the start reaches the goal
    run_main(train_offline, f"--config={ROOT}/configs/iql_antmaze.py", f"--dataset={ds_id}",
             f"--workdir={tmp_path / 'run'}", "--sweep=beta=10,0", "--config.max_steps=12000",
             "--config.eval_interval=12000", "--config.eval_episodes=20", "--config.hidden_dims=(64,64)",
             "--config.batch_size=64", "--config.tensorboard=False")
    scores = {row["beta"]: float(row["success_rate"]) for row in read_csv(tmp_path / "run" / "eval.csv")}
    assert set(scores) == {"10.0", "0.0"}, scores
    # Measured with seeds 0-3: IQL 1.0, 1.0, 1.0, 0.95; BC 0.0 each time.
    assert scores["10.0"] >= 0.6 and scores["10.0"] >= scores["0.0"] + 0.4, scores


def test_shipped_goal_ant_drives_through_the_umaze():
    """The shipped goal-reaching Ant with D4RL's action noise, steered by the planner, reaches
    D4RL's umaze goal (measured 16/20 here; an untrained actor reaches 0)."""
    rate = mazes.success_rate("antmaze", "umaze", mazes.controller("antmaze"), episodes=10, seed=0)["success"]
    assert rate >= 0.3, rate


def test_antmaze_without_a_policy_is_a_clear_error(maze_root, tmp_path):
    with pytest.raises(DatasetError, match="no goal-reaching Ant policy") as e:
        mazes.make_dataset("antmaze", "umaze", namespace="none", steps=10, behavior_dir=str(tmp_path / "none"))
    assert "tools.train_behavior" in str(e.value)
    assert "none/antmaze/umaze-v1" not in minari.list_local_datasets()


def yawed_body(yaw: float, velocity) -> np.ndarray:
    """A 27-number Ant body observation facing `yaw` and moving at world `velocity` (x, y)."""
    body = np.zeros((1, 27))
    body[0, 1], body[0, 4] = np.cos(yaw / 2), np.sin(yaw / 2)  # quaternion (w, 0, 0, z)
    body[0, 13:15] = velocity
    return body


def test_goal_ant_policy_input_is_in_the_heading_frame():
    # The same situation seen from two headings gives the same input: a goal 3 m ahead, moving ahead at 1 m/s.
    for yaw in (0.0, 0.7, -2.5):
        ahead = np.array([[np.cos(yaw), np.sin(yaw)]])
        x = goal_ant.policy_input(yawed_body(yaw, ahead), np.array([[5.0, -2.0]]), np.array([[5.0, -2.0]]) + 3 * ahead)
        assert x.shape == (1, 29)
        np.testing.assert_allclose(x[0, 27:], [3.0, 0.0], atol=1e-5)   # goal ahead
        np.testing.assert_allclose(x[0, 13:15], [1.0, 0.0], atol=1e-5)  # velocity ahead
    far = goal_ant.policy_input(yawed_body(0.0, [0, 0]), np.zeros((1, 2)), np.array([[0.0, 20.0]]))
    np.testing.assert_allclose(far[0, 27:], [0.0, goal_ant.MAX_GOAL_DISTANCE], atol=1e-5)  # a far waypoint, shortened


def test_goal_ant_reward_is_progress_plus_healthy_minus_control():
    env = goal_ant.GoalReachingAnt()
    obs, _ = env.reset(seed=3)
    assert obs.shape == (29,) and 1.0 <= np.linalg.norm(obs[27:]) <= goal_ant.MAX_GOAL_DISTANCE
    action = np.full(8, 0.5)
    before = np.linalg.norm(env.goal - env.ant.data.qpos[:2])
    _, reward, _, _, info = env.step(action)
    progress = (before - info["goal_distance"]) / env.ant.dt
    expected = progress + goal_ant.HEALTHY_REWARD - goal_ant.CTRL_COST_WEIGHT * 8 * 0.25
    assert reward == pytest.approx(expected, abs=1e-9)
    env.close()


def test_goal_ant_episode_ends_when_the_ant_lies_on_its_back():
    env = goal_ant.GoalReachingAnt()
    env.reset(seed=0)
    _, _, terminated, _, info = env.step(np.zeros(8))
    assert not terminated and not info["flipped"]
    qpos, qvel = env.ant.data.qpos.copy(), env.ant.data.qvel.copy()
    qpos[2], qpos[3:7] = 0.3, [0.0, 1.0, 0.0, 0.0]  # upside down, at a height Ant-v4 calls healthy
    env.ant.set_state(qpos, qvel)
    _, _, terminated, _, info = env.step(np.zeros(8))
    assert terminated and info["flipped"]
    env.close()


def test_export_of_one_snapshot_ships_only_it(tmp_path):
    run = untrained_ant_policy(tmp_path / "run")
    snapshots = json.loads((tmp_path / "run" / "snapshots.json").read_text())
    (tmp_path / "run" / "snapshots.json").write_text(json.dumps(snapshots + [{"step": 2000, "return": 5.0}]))
    Behavior(run).export(str(tmp_path / "ship"), step=1000)  # not the best return: the chosen one
    assert os.listdir(tmp_path / "ship" / "snapshots") == ["step_0001000.msgpack"]
    shipped = Behavior(str(tmp_path / "ship"))
    assert shipped.expert["step"] == 1000 and [s["step"] for s in shipped.snapshots] == [1000]
    with pytest.raises(DatasetError, match="no snapshot at step 3000"):
        Behavior(run).export(str(tmp_path / "other"), step=3000)


@pytest.mark.parametrize("family", ["pointmaze", "antmaze"])
def test_the_evaluation_cell_is_commanded_to_the_evaluation_goal(family):
    """An episode commanded to D4RL's goal cell drives to the evaluation goal itself (the one
    that rewards it); other cells are commanded as the env draws them."""
    env = mazes.EvaluationGoal(mazes.make_env(family, "umaze", evaluation=False), G)
    for seed in range(3):
        obs, _ = env.reset(seed=seed, options={"reset_cell": np.asarray(S), "goal_cell": np.asarray(G)})
        assert mazes.Planner(env.unwrapped.maze).cell(env.commanded_goal()) == G
        np.testing.assert_array_equal(env.commanded_goal(), obs["desired_goal"])
        obs, _ = env.reset(seed=seed, options={"reset_cell": np.asarray(G), "goal_cell": np.asarray(S)})
        np.testing.assert_array_equal(env.commanded_goal(), env.unwrapped.goal)
        assert mazes.Planner(env.unwrapped.maze).cell(env.commanded_goal()) == S
        assert np.linalg.norm(env.commanded_goal() - obs["desired_goal"]) > 1  # the evaluation goal is elsewhere
    env.close()


def test_maze_ids_carry_the_builder_version(maze_root):
    assert mazes.make_dataset("pointmaze", "umaze", namespace="ver", steps=300, num_envs=1) == "ver/pointmaze/umaze-v1"
    assert mazes.ensure_dataset("local/pointmaze/umaze-v2") is False  # not a builder id: left to Minari
    with pytest.raises(DatasetError, match="earlier maze builder.*local/pointmaze/umaze-v1"):
        mazes.ensure_dataset("local/pointmaze/umaze-v0")


def test_maze_layouts_are_gymnasium_robotics_maps():
    """mazes.py takes the layouts from d4rl_antmaze (D4RL's) and writes the play cells out, so
    that it imports gymnasium_robotics only to make an env: they equal Gymnasium-Robotics' maps."""
    from gymnasium_robotics.envs.maze import maps

    assert mazes.MAZES == {"umaze": maps.U_MAZE, "medium": maps.MEDIUM_MAZE, "large": maps.LARGE_MAZE}
    for maze, grid in (("medium", maps.MEDIUM_MAZE_DIVERSE_GR), ("large", maps.LARGE_MAZE_DIVERSE_GR)):
        assert mazes.PLAY_CELLS[maze] == [(r, c) for r, row in enumerate(grid) for c, v in enumerate(row) if v == "c"]
