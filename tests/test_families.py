"""Every benchmark family a researcher brings (docs/datasets.md): Minari's D4RL families on data
recorded by Minari's own DataCollector on the real envs, and D4RL's own AntMaze, Adroit and
Kitchen files written here; each trains with its config's :smoke variant and evaluates, with the
score columns the family promises."""

import json

import gymnasium as gym
import h5py
import minari
import numpy as np
import pytest
from conftest import ROOT, private_minari_root, read_csv, run_main

import dataset as dataset_lib
import evaluation
import train_offline
from harness import cli, families

KITCHEN_TASKS = ["microwave", "kettle", "light switch", "slide cabinet"]  # D4RL/kitchen/complete-v2's
# (id, gym.make kwargs of the recording env, Minari eval env or None, reference returns or None)
FAMILIES = {
    # Minari recorded Kitchen with task removal and termination off, and no evaluation env.
    "kitchen": ("FrankaKitchen-v1", {"tasks_to_complete": KITCHEN_TASKS, "remove_task_when_completed": False,
                                     "terminate_on_tasks_completed": False}, None, None),
    # Reference returns other than D4RL's, to see them replaced (and said so).
    "pen": ("AdroitHandPen-v1", {}, None, (0.0, 1000.0)),
    "door": ("AdroitHandDoor-v1", {}, None, None),
    "pointmaze": ("PointMaze_UMaze-v3", {"continuing_task": True}, "PointMaze_UMaze-v3", (0.0, 50.0)),
    "antmaze": ("AntMaze_UMaze-v4", {"continuing_task": True}, "AntMaze_UMaze-v4", (0.0, 50.0)),
}
CONFIGS = {"kitchen": "iql_kitchen", "pen": "iql_adroit", "door": "iql_adroit", "pointmaze": "iql_antmaze",
           "antmaze": "iql_antmaze"}
SHORT = ["--config.max_steps=50", "--config.steps_per_call=50", "--config.log_interval=50",
         "--config.eval_interval=50", "--config.checkpoint_interval=50", "--config.eval_max_episode_steps=30",
         "--config.hidden_dims=(16,16)", "--config.tensorboard=False"]


def record(name: str, steps: int = 120) -> None:
    """`test/<name>/random-v0`: random actions in the family's real env through DataCollector."""
    env_id, kwargs, eval_env, refs = FAMILIES[name]
    evaluation.register_robotics(env_id)
    env = minari.DataCollector(gym.make(env_id, max_episode_steps=40, **kwargs))
    env.reset(seed=0)
    env.action_space.seed(0)
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()
    extra = {} if refs is None else {"ref_min_score": refs[0], "ref_max_score": refs[1]}
    env.create_dataset(f"test/{name}/random-v0", eval_env=eval_env, algorithm_name="random", **extra)


@pytest.fixture(scope="module")
def family_root(tmp_path_factory):
    roots = private_minari_root(tmp_path_factory, "families")
    root = next(roots)
    for name in FAMILIES:
        record(name)
    yield root
    next(roots, None)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_each_minari_family_trains_and_evaluates_with_its_score(family_root, tmp_path, capsys, name):
    workdir = tmp_path / name
    run_main(train_offline, f"--config={ROOT}/configs/{CONFIGS[name]}.py:smoke", f"--dataset=test/{name}/random-v0",
             f"--workdir={workdir}", *SHORT)
    out = capsys.readouterr().out
    saved = json.loads((workdir / "config.json").read_text())["dataset"]
    assert saved["eval_env"] == FAMILIES[name][2] or saved["eval_env"] == FAMILIES[name][0]
    (row,) = read_csv(workdir / "eval.csv")
    ret, score = float(row["return"]), float(row["normalized_score"])
    ref_min, ref_max = saved["ref_min_score"], saved["ref_max_score"]
    assert score == pytest.approx(100 * (ret - ref_min) / (ref_max - ref_min), rel=1e-5)
    if name == "kitchen":  # the return is the tasks completed, 25 points each
        assert (ref_min, ref_max) == (0.0, 4.0) and "as D4RL's Kitchen" in out
        assert float(row["tasks_completed"]) == pytest.approx(ret) and score == pytest.approx(25 * ret)
    elif name in ("pen", "door"):  # D4RL's references, said so where the dataset's differ
        assert (ref_min, ref_max) == dataset_lib.D4RL_REFERENCE_SCORES[name]
        assert f"as D4RL's {name}" in out
        assert ("the dataset's metadata says 0.0 / 1000.0" in out) == (name == "pen")
    else:  # the mazes: a success rate
        assert 0.0 <= float(row["success_rate"]) <= 1.0 and (ref_min, ref_max) == (0.0, 50.0)


def test_kitchen_observations_flatten_depth_first_in_sorted_key_order(family_root):
    """81 = achieved_goal (kettle 7, light switch 2, microwave 1, slide cabinet 1), desired_goal
    (the same), observation (59); the dataset's rows equal what the evaluation env observes."""
    data, info = dataset_lib.load_minari("test/kitchen/random-v0", "none", download=False)
    assert data.observations.shape[1] == 81
    env = info.make_env()
    first, _ = env.reset(seed=0)  # DataCollector's first episode was reset with seed 0 too
    np.testing.assert_allclose(np.asarray(data.observations[0]), first, atol=1e-6)
    goals = env.unwrapped.goal
    np.testing.assert_allclose(first[11:18], goals["kettle"], atol=1e-6)
    np.testing.assert_allclose(first[18:20], goals["light switch"], atol=1e-6)
    np.testing.assert_allclose(first[20:21], goals["microwave"], atol=1e-6)
    np.testing.assert_allclose(first[21:22], goals["slide cabinet"], atol=1e-6)
    raw = env.unwrapped.robot_env.data.qpos[:9]  # the observation part starts with the robot's joints
    np.testing.assert_allclose(first[22:31], raw, atol=2e-3)  # (plus the env's own observation noise)


class OpenMicrowaveAtReset(gym.Wrapper):
    """The Kitchen with the microwave already open: the first step completes that task."""

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        robot = self.env.unwrapped.robot_env
        address = robot.model.jnt_qposadr[robot.model.joint("microwave").id]
        robot.data.qpos[address] = -0.75
        return obs, info


def test_kitchen_counts_each_task_once_and_removes_it():
    result = evaluation.evaluate(lambda obs: np.zeros((len(obs), 9)), lambda: evaluation.flat_observations(
        OpenMicrowaveAtReset(evaluation.make_kitchen(KITCHEN_TASKS, max_episode_steps=20))), 2, 0)
    assert result["tasks"].tolist() == [1.0, 1.0] and result["returns"].tolist() == [1.0, 1.0]
    assert result["length"] == 20  # three tasks left: the episode runs to its time limit


def test_the_kitchen_workaround_makes_the_env():
    evaluation.register_robotics("FrankaKitchen-v1")
    env = gym.make("FrankaKitchen-v1")
    obs, _ = env.reset(seed=0)
    robot = env.unwrapped.robot_env
    from gymnasium_robotics.utils import mujoco_utils

    joint = robot.model.joint("robot:panda0_joint1")
    assert mujoco_utils.get_joint_qpos(robot.model, robot.data, "robot:panda0_joint1").tolist() == [
        robot.data.qpos[joint.qposadr[0]]]
    np.testing.assert_allclose(obs["observation"][:9], robot.data.qpos[:9], atol=2e-3)  # (observation noise)


def random_return(env: gym.Env, episodes: int = 5) -> tuple[float, float]:
    env.action_space.seed(0)
    returns, lengths = [], []
    for episode in range(episodes):
        env.reset(seed=episode)
        total, steps, done = 0.0, 0, False
        while not done:
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            total, steps, done = total + reward, steps + 1, terminated or truncated
        returns.append(total)
        lengths.append(steps)
    return float(np.mean(returns)), float(np.mean(lengths))


def test_adroit_door_scored_as_d4rl_lands_on_d4rls_random_return():
    """D4RL's door random return is -56.51; gymnasium-robotics' flipped reach term lifts it by ~11."""
    d4rl_min = dataset_lib.D4RL_REFERENCE_SCORES["door"][0]
    scored, length = random_return(evaluation.make_adroit("AdroitHandDoor-v1"))
    assert length == 200 and abs(scored - d4rl_min) < 2.0
    if evaluation.adroit_reward_flipped("AdroitHandDoor-v1"):
        raw, _ = random_return(gym.make("AdroitHandDoor-v1"))
        assert raw - scored > 8.0


def test_adroit_pen_episodes_last_100_steps_and_end_when_the_pen_drops():
    env = evaluation.make_adroit("AdroitHandPen-v1")
    _, length = random_return(env, episodes=3)
    assert length < 100  # random hands drop the pen
    env.reset(seed=0)
    for step in range(1, 101):
        _, _, terminated, truncated, _ = env.step(np.zeros(24))
        if terminated or truncated:
            break
    u = env.unwrapped
    assert terminated == bool(u.data.xpos[u.obj_body_id][2] < evaluation.PEN_DROP_HEIGHT)
    assert truncated == (step == 100 and not terminated)


def test_an_env_that_cannot_be_built_names_itself_and_the_versions(family_root, tmp_path, monkeypatch):
    from gymnasium_robotics.envs.franka_kitchen import kitchen_env

    def broken(*args, **kwargs):
        raise AssertionError

    monkeypatch.setattr(kitchen_env.KitchenEnv, "__init__", broken)
    with pytest.raises(cli.UserError, match=r"FrankaKitchen-v1 cannot be built: AssertionError.*gymnasium-robotics "
                                            rf"{evaluation.robotics_version()}"):
        run_main(train_offline, f"--config={ROOT}/configs/iql_kitchen.py:smoke", "--dataset=test/kitchen/random-v0",
                 f"--workdir={tmp_path / 'run'}")


# ---- D4RL's own files ----


def antmaze_file(path, n: int = 600, seed: int = 0) -> dict:
    """A D4RL-format AntMaze file: 29-number observations, rewards = terminals in clusters near a
    goal, episodes going on past it, a timeout every 100 rows, infos/goal; one unflagged jump."""
    rng = np.random.default_rng(seed)
    obs = np.zeros((n, 29), np.float32)
    obs[:, 2] = 0.55
    obs[:, :2] = np.cumsum(rng.normal(0, 0.05, (n, 2)), axis=0)
    obs[250:, :2] += 5.0  # an episode end the timeouts miss, as in D4RL's v0 files
    rewards = (np.arange(n) % 100 >= 95).astype(np.float32)
    arrays = {"observations": obs, "actions": rng.uniform(-1, 1, (n, 8)).astype(np.float32), "rewards": rewards,
              "terminals": rewards, "timeouts": (np.arange(n) % 100 == 99).astype(np.float32)}
    with h5py.File(path, "w") as f:
        for k, v in arrays.items():
            f[k] = v
        f["infos/goal"] = np.zeros((n, 2), np.float32)
    return arrays


@pytest.mark.parametrize("name, env_id", [("antmaze-umaze-v0.hdf5", "D4RLAntMaze_UMaze-v0"),
                                          ("antmaze-medium-diverse-v2.hdf5", "D4RLAntMaze_Medium-v0"),
                                          ("antmaze-large-play-v2.hdf5", "D4RLAntMaze_Large-v0"),
                                          ("pen-human-v1.hdf5", "AdroitHandPen-v1"),
                                          ("relocate-cloned-v1.hdf5", "AdroitHandRelocate-v1"),
                                          ("hopper-medium-v2.hdf5", "Hopper-v4"), ("mine.hdf5", None)])
def test_d4rl_file_names_give_their_env(name, env_id):
    assert (families.d4rl_env(name) or (None,))[0] == env_id


def test_d4rl_antmaze_file_read_as_the_original_read_it(tmp_path):
    arrays = antmaze_file(tmp_path / "antmaze-umaze-v0.hdf5")
    path = str(tmp_path / "antmaze-umaze-v0.hdf5")
    data, info = dataset_lib.load_file(path, "antmaze")
    reading = families.antmaze_reading(path, data, info.dropped_timeout_rows)
    kept = arrays["timeouts"] == 0
    kept[-1] = False  # the last row's successor is unknown
    assert data.size == kept.sum() == 594 and info.dropped_timeout_rows == 6
    np.testing.assert_array_equal(np.asarray(data.masks), 1 - arrays["terminals"][kept])  # goal rows: mask 0
    np.testing.assert_array_equal(np.asarray(data.rewards), arrays["rewards"][kept] - 1)
    np.testing.assert_array_equal(np.asarray(data.next_observations[0]), arrays["observations"][1])
    assert (info.ref_min_score, info.ref_max_score) == (0.0, 1.0)
    assert "D4RL AntMaze file v0" in reading and "1 transition(s) jump more than 1 m" in reading


def test_d4rl_antmaze_file_trains_and_evaluates_without_env_name(tmp_path, capsys):
    antmaze_file(tmp_path / "antmaze-umaze-v2.hdf5")
    workdir = tmp_path / "run"
    run_main(train_offline, f"--config={ROOT}/configs/iql_antmaze.py:smoke",
             f"--dataset={tmp_path / 'antmaze-umaze-v2.hdf5'}", f"--workdir={workdir}", *SHORT)
    first_lines = capsys.readouterr().out.splitlines()[:4]
    assert any("evaluating in D4RLAntMaze_UMaze-v0" in line for line in first_lines)
    saved = json.loads((workdir / "config.json").read_text())["dataset"]
    assert saved["eval_env"] == "D4RLAntMaze_UMaze-v0" and saved["reading"].startswith("D4RL AntMaze file v2")
    (row,) = read_csv(workdir / "eval.csv")
    assert float(row["normalized_score"]) == pytest.approx(100 * float(row["success_rate"]))


def test_d4rl_adroit_file_evaluates_in_its_env_with_d4rls_references(tmp_path, capsys):
    rng = np.random.default_rng(0)
    n = 200
    with h5py.File(tmp_path / "door-human-v1.hdf5", "w") as f:
        f["observations"] = rng.standard_normal((n, 39)).astype(np.float32)
        f["actions"] = rng.uniform(-1, 1, (n, 28)).astype(np.float32)
        f["rewards"] = rng.standard_normal(n).astype(np.float32)
        f["terminals"] = np.zeros(n, np.float32)
        f["timeouts"] = (np.arange(n) % 100 == 99).astype(np.float32)
    workdir = tmp_path / "run"
    run_main(train_offline, f"--config={ROOT}/configs/iql_adroit.py:smoke",
             f"--dataset={tmp_path / 'door-human-v1.hdf5'}", f"--workdir={workdir}", *SHORT)
    out = capsys.readouterr().out
    assert "evaluating in AdroitHandDoor-v1" in out and "as D4RL's door" in out
    saved = json.loads((workdir / "config.json").read_text())["dataset"]
    assert (saved["ref_min_score"], saved["ref_max_score"]) == dataset_lib.D4RL_REFERENCE_SCORES["door"]
    # Another observation layout under an Adroit name is a clear error.
    with h5py.File(tmp_path / "pen-human-v1.hdf5", "w") as f:
        f["observations"] = rng.standard_normal((n, 39)).astype(np.float32)
        f["actions"] = rng.uniform(-1, 1, (n, 24)).astype(np.float32)
        f["rewards"] = np.zeros(n, np.float32)
        f["terminals"] = np.zeros(n, np.float32)
    with pytest.raises(cli.UserError, match="observes shape"):
        run_main(train_offline, f"--config={ROOT}/configs/iql_adroit.py:smoke",
                 f"--dataset={tmp_path / 'pen-human-v1.hdf5'}", f"--workdir={tmp_path / 'run2'}")


@pytest.mark.parametrize("name", ["kitchen_microwave_kettle_light_slider-v0.hdf5", "kitchen-mixed-v0.hdf5",
                                  "my-kitchen.hdf5"])
def test_d4rl_kitchen_file_is_refused_naming_minaris_kitchen(tmp_path, name):
    n = 100
    with h5py.File(tmp_path / name, "w") as f:
        f["observations"] = np.zeros((n, 60), np.float32)
        f["actions"] = np.zeros((n, 9), np.float32)
        f["rewards"] = np.zeros(n, np.float32)
        f["terminals"] = np.zeros(n, np.float32)
    extra = ["--env_name=FrankaKitchen-v1"] if name == "my-kitchen.hdf5" else []
    with pytest.raises(cli.UserError, match="D4RL Kitchen file.*D4RL/kitchen/complete-v2"):
        run_main(train_offline, f"--config={ROOT}/configs/iql_kitchen.py:smoke", f"--dataset={tmp_path / name}",
                 f"--workdir={tmp_path / 'run'}", *extra)
