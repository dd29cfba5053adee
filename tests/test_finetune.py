"""train_finetune: the online phase, both phases in the logs, and that fine-tuning helps."""

import json
import os
import subprocess
import sys

import chex
import flax
import gymnasium as gym
import jax
import jax.numpy as jnp
import minari
import numpy as np
import pytest
import toy_env
from conftest import ROOT, read_csv, run_main, run_processes, toy_args

import dataset as dataset_lib
import train_finetune
import train_offline
from harness import cli, multiseed, online, outputs
from learner import IQLLearner
from replay_buffer import ReplayBuffer

SMOKE = f"--config={ROOT}/configs/iql_mujoco_finetune.py:smoke"


def test_fine_tuning_beats_the_offline_policy(toy, tmp_path):
    # The data only pushes left; the target is on the right. Offline IQL cannot find it,
    # a couple of thousand online steps with the default recipe do.
    run_main(train_finetune, *toy_args(toy, tmp_path / "run", "--config.pretrain_steps=1000",
                                  "--config.online_steps=2000", "--config.eval_interval=500",
                                  "--config.log_interval=500", "--config.eval_episodes=5"))
    evals = read_csv(tmp_path / "run" / "eval.csv")
    offline = [float(r["normalized_score"]) for r in evals if r["phase"] == "offline"]
    online = [float(r["normalized_score"]) for r in evals if r["phase"] == "online"]
    assert offline[-1] < 0, offline
    assert np.mean(online[-2:]) > offline[-1] + 50, (offline, online)
    # One step counter: online rows continue after the offline ones, with env steps alongside.
    assert [int(r["step"]) for r in evals] == [500, 1000, 1500, 2000, 2500, 3000]
    assert [int(r["env_steps"]) for r in evals] == [0, 0, 500, 1000, 1500, 2000]


def test_both_phases_two_seeds_mixed_batches(toy, tmp_path):
    run_main(train_finetune, *toy_args(toy, tmp_path / "run", "--num_seeds=2", "--config.mix_offline=True",
                                  "--config.utd=2", "--config.online_steps=120", "--config.eval_interval=100",
                                  "--config.log_interval=50", "--config.pretrain_eval_interval=50"))
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    # 120 env steps per seed in 30-step episodes: 4 episodes each, really stepped.
    assert summary["online_env_steps"] == 120 and summary["online_episodes_per_seed"] == [4, 4]
    # One step counter: the offline steps, then one per env step; the agents made utd = 2
    # updates per env step.
    assert summary["steps"] == 100 + 120
    saved = flax.serialization.msgpack_restore((tmp_path / "run" / "agent.msgpack").read_bytes())
    assert np.asarray(saved["actor"]["step"]).tolist() == [100 + 2 * 120] * 2
    train = read_csv(tmp_path / "run" / "train.csv")
    assert {r["phase"] for r in train} == {"offline", "online"}
    online = [r for r in train if r["phase"] == "online"]
    # Logged every 50 env steps: steps 100 + 50 and 100 + 100.
    assert [(int(r["step"]), int(r["seed"])) for r in online] == [(150, 0), (150, 1), (200, 0), (200, 1)]
    assert all(float(r["online_return"]) != 0 for r in online)
    evals = read_csv(tmp_path / "run" / "eval.csv")
    assert [(r["phase"], int(r["step"]), int(r["env_steps"])) for r in evals] == (
        [("offline", 50, 0)] * 2 + [("offline", 100, 0)] * 2 + [("online", 200, 100)] * 2
        + [("online", 220, 120)] * 2)  # offline every pretrain_eval_interval steps, online every eval_interval


def test_init_from_an_offline_agent(toy, tmp_path):
    path, env_id = toy
    run_main(train_offline, f"--config={ROOT}/configs/iql_mujoco.py:smoke", f"--dataset={path}", f"--env_name={env_id}",
        f"--workdir={tmp_path / 'offline'}", "--config.hidden_dims=(32,32)", "--config.batch_size=64",
        "--config.reward_transform=none", "--config.tensorboard=False", "--config.cosine_decay=False",
        "--config.eval_episodes=0")
    run_main(train_finetune, *toy_args(toy, tmp_path / "ft", f"--init_from={tmp_path / 'offline' / 'agent.msgpack'}",
                                  "--config.online_steps=60", "--config.eval_interval=60", "--config.log_interval=30",
                                  "--config.pretrain_steps=0"))
    evals = read_csv(tmp_path / "ft" / "eval.csv")
    # No offline phase: the counter starts at the saved agent's 200 steps.
    assert [(r["phase"], int(r["step"]), int(r["env_steps"])) for r in evals] == [("online", 260, 60)]
    with pytest.raises(cli.UserError, match="--init_from"):
        run_main(train_finetune, *toy_args(toy, tmp_path / "bad", f"--init_from={tmp_path / 'nothing.msgpack'}"))
    # An agent trained with another schedule: the error names the field and both values.
    with pytest.raises(cli.UserError, match=r"cosine_decay=False \(this config: True\)"):
        run_main(train_finetune, *toy_args(toy, tmp_path / "cosine", f"--init_from={tmp_path / 'offline' / 'agent.msgpack'}",
                                      "--config.cosine_decay=True", "--config.pretrain_steps=0"))


def test_max_steps_in_a_fine_tuning_config_is_an_error(toy, tmp_path):
    """Fine-tuning's schedule spans pretrain_steps + online_steps; a max_steps would be ignored."""
    path = tmp_path / "with_max_steps.py"
    path.write_text("from configs import iql_mujoco_finetune\n\n\ndef get_config(variant=''):\n"
                    "    config = iql_mujoco_finetune.get_config('smoke')\n    config.max_steps = 500\n"
                    "    return config\n")
    args = [a for a in toy_args(toy, tmp_path / "w") if not a.startswith("--config=")]
    with pytest.raises(cli.UserError, match="config.max_steps is not read by fine-tuning"):
        run_main(train_finetune, f"--config={path}", *args)


def test_host_envs_reset_ended_episodes_and_keep_their_last_obs(toy):
    _, env_id = toy
    envs = online.HostEnvs(lambda: gym.make(env_id), [0, 1])
    first = envs.obs.copy()
    push = np.full((2, 1), 0.2, np.float32)  # x moves 0.02 a step: 0.6 over an episode, never clipped
    for t in range(1, toy_env.STEPS + 1):  # both episodes end (time limit) at step STEPS
        acted_on = envs.obs
        obs, rewards, terminated, truncated, last_obs, next_obs = envs.step(push)
        assert obs is acted_on and envs.obs is next_obs
        assert next_obs.dtype == np.float32 and next_obs.shape == (2, 1) and rewards.shape == (2,)
        if t < toy_env.STEPS:
            np.testing.assert_array_equal(next_obs, last_obs)
            assert truncated.tolist() == [0.0, 0.0]
    assert truncated.tolist() == [1.0, 1.0] and terminated.tolist() == [0.0, 0.0]
    # An ended episode's s' is its final observation; the next episode has started afresh.
    np.testing.assert_allclose(last_obs[:, 0], first[:, 0] + 0.6, rtol=1e-5)
    assert np.all(np.abs(next_obs) <= 0.2)
    envs.close()


def test_an_env_step_never_copies_the_replay_buffer(tiny_config):
    """The compiled calls of an env step: `store_and_act` writes the donated buffer in place
    (its input aliases its output; no buffer-sized temporary), `update` only reads it (no
    buffer-sized temporary or output). A per-step copy of a 2M-row buffer costs ~0.5 s."""
    obs_dim, act_dim, capacity, n = 3, 2, 20_000, 2
    mesh = multiseed.make_mesh(n, 1)
    agents = multiseed.create_agents(lambda key: IQLLearner.create(key, jnp.zeros(obs_dim), jnp.zeros(act_dim),
                                                                   IQLLearner.fields(tiny_config)), [0, 1], mesh)
    buffers = multiseed.shard_seeds(multiseed.stack([ReplayBuffer.create(capacity, obs_dim, act_dim)] * n), mesh)
    buffer_bytes = sum(x.nbytes for x in jax.tree.leaves(buffers.data))
    stats = multiseed.shard_seeds(online.OnlineStats.create(np.zeros(n), np.zeros((n, online.RECENT))), mesh)
    keys = multiseed.shard_seeds(jax.random.split(jax.random.key(0), n), mesh)
    state = online.OnlineState(buffers, stats, multiseed.shard_seeds(jnp.zeros((n, act_dim)), mesh))
    obs, scalars = np.zeros((n, obs_dim), np.float32), np.zeros(n, np.float32)
    rows = online.StepRows(obs, scalars, scalars, scalars, obs, obs)
    store = online.compiled_store_and_act(mesh, 1.0).lower(state, agents, keys, rows, 1).compile().memory_analysis()
    assert store.alias_size_in_bytes >= buffer_bytes and store.temp_size_in_bytes < buffer_bytes / 10, store
    update = online.compiled_update(mesh, 2, 16, False).lower(agents, buffers, 0).compile().memory_analysis()
    assert update.temp_size_in_bytes < buffer_bytes / 10 and update.output_size_in_bytes < buffer_bytes / 10, update


def test_buffer_seeded_with_the_dataset(toy):
    data, info = dataset_lib.load_dataset(toy[0], "locomotion")
    buffer = ReplayBuffer.from_dataset(data, data.size + 10, info.reward_scale, info.reward_shift)
    assert int(buffer.size) == data.size and int(buffer.cursor) == data.size
    np.testing.assert_array_equal(buffer.data.rewards[: data.size], data.rewards)
    # Online rewards get the same transform as the offline ones.
    rows = (np.zeros((1, 1)), np.zeros((1, 1)), np.array([2.0]), np.zeros(1), np.ones(1), np.zeros((1, 1)))
    buffer = buffer.insert(*rows)
    assert float(buffer.data.rewards[data.size]) == pytest.approx(2.0 * info.reward_scale + info.reward_shift)
    assert float(buffer.data.masks[data.size]) == 1.0 and float(buffer.data.dones[data.size]) == 1.0
    with pytest.raises(dataset_lib.DatasetError, match="buffer_size"):
        ReplayBuffer.from_dataset(data, data.size - 1)


def wide_minari_dataset(dataset_id: str, episodes: int = 40, seed: int = 0) -> str:
    """A Minari dataset recorded in the raw [-3, 3] env: a behavior pushing left, uniform in [-3, 0]."""
    env_id = toy_env.register_wide()
    collector = minari.DataCollector(gym.make(env_id))
    rng = np.random.default_rng(seed)
    for e in range(episodes):
        collector.reset(seed=seed * 1000 + e)
        for _ in range(toy_env.STEPS):
            collector.step(rng.uniform(-3.0, 0.0, (1,)).astype(np.float32))
    collector.create_dataset(dataset_id, eval_env=env_id, algorithm_name="left", ref_min_score=0.0,
                             ref_max_score=30.0)
    collector.close()
    return env_id


def test_env_with_bounds_of_3_trains_evaluates_and_fine_tunes(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    wide_minari_dataset("test/widereach/left-v0")

    # The policy's +1 reaches the raw env as +3, in the env the dataset's metadata names.
    data, info = dataset_lib.load_dataset("test/widereach/left-v0", "none")
    env = info.make_env()
    env.reset(seed=0)
    env.step(np.array([1.0], np.float32))
    assert env.unwrapped.last_action == pytest.approx(3.0)
    # The dataset's actions, uniform in [-3, 0], now lie in [-1, 0].
    actions = np.asarray(data.actions[:, 0])
    assert actions.min() < -0.95 and actions.max() <= 0.0 and info.actions_rescaled

    workdir = tmp_path / "run"
    run_main(train_finetune, f"--config={ROOT}/configs/iql_mujoco_finetune.py:smoke",
             "--dataset=test/widereach/left-v0", f"--workdir={workdir}", "--config.hidden_dims=(16,16)",
             "--config.reward_transform=none", "--config.tensorboard=False", "--config.online_steps=60",
             "--config.eval_interval=50")
    saved = json.loads((workdir / "config.json").read_text())["dataset"]["actions"]
    assert saved == {"low": [-3.0], "high": [3.0], "rescaled_to_unit_box": True, "clipped_rows": 0,
                     "max_violation": 0.0}
    evals = read_csv(workdir / "eval.csv")
    assert {r["phase"] for r in evals} == {"offline", "online"}
    assert all(np.isfinite(float(r["normalized_score"])) for r in evals)
    # The buffer holds the dataset's scaled actions, then the policy's own, all in [-1, 1].
    newest = outputs.Checkpointer(str(workdir)).steps()[0]
    state = outputs.load_pytree(outputs.Checkpointer(str(workdir)).path(newest), lambda raw: raw)
    stored = np.asarray(state["online_state"]["buffers"]["data"]["actions"])[0, : data.size + 60, 0]
    np.testing.assert_allclose(stored[: data.size], actions)
    assert np.abs(stored[data.size:]).max() <= 1.0 and np.abs(stored[data.size:]).max() > 0


@pytest.mark.slow  # IDQL's compiles, both phases
def test_idql_fine_tuning_waits_then_trains_only_the_critic(toy, tmp_path):
    """IDQL as its authors fine-tune: no update for the first start_training env steps, then
    one critic update per env step on online_batch_size rows (half online, half offline); the
    diffusion actor stays as pretrained."""
    path, env_id = toy
    workdir = tmp_path / "idql"
    run_main(train_finetune, f"--config={ROOT}/configs/idql_mujoco_finetune.py:smoke", f"--dataset={path}",
             f"--env_name={env_id}", f"--workdir={workdir}", "--config.hidden_dims=(16,16)",
             "--config.reward_transform=none", "--config.tensorboard=False", "--config.start_training=40",
             "--config.online_batch_size=16", "--config.steps_per_call=20", "--config.log_interval=20",
             "--config.checkpoint_interval=100")
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["steps"] == 100 + 100  # offline steps, then one per env step
    train = read_csv(workdir / "train.csv")
    online = [r for r in train if r["phase"] == "online"]
    assert [int(r["env_steps"]) for r in online] == [60, 80, 100] and all(r["actor_loss"] == "" for r in online)
    checkpointer = outputs.Checkpointer(str(workdir))
    offline = outputs.load_pytree(checkpointer.path(100), lambda raw: raw)["agents"]
    final = outputs.load_pytree(checkpointer.path(200), lambda raw: raw)["agents"]
    assert int(np.asarray(final["critic"]["step"])[0]) == 100 + (100 - 40)  # no updates while waiting
    chex.assert_trees_all_equal(offline["actor"]["params"], final["actor"]["params"])
    assert not np.allclose(jax.tree.leaves(offline["critic"]["params"])[0], jax.tree.leaves(final["critic"]["params"])[0])


SHARDED_FINETUNE = """
import sys
import toy_env
toy_env.register()
import train_finetune
from harness import cli
cli.run(train_finetune.main, train_finetune.FLAGS)
"""


# train_finetune's main once per argument list (a JSON list of lists), in one process with 4
# CPU devices: imports and the programs that do not depend on the device count are shared.
SHARDED_RUNS = """
import json
import sys
import toy_env
toy_env.register()
from conftest import run_main
import train_finetune
for args in json.loads(sys.argv[1]):
    run_main(train_finetune, *args)
"""


@pytest.mark.slow  # two runs of 4 seeds in a subprocess
def test_online_phase_sharded_over_devices_equals_one_device(toy, tmp_path):
    # 4 seeds on 1 and 2 CPU devices (two vmapped seeds per device: sharding and vmap at once; one
    # seed per device is test_two_processes_under_jax_distributed_equal_one_process's layout): the
    # online loop gives the same result.
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu",
               PYTHONPATH=os.pathsep.join([ROOT, os.path.join(ROOT, "tests")]))
    runs = [toy_args(toy, tmp_path / f"devices{devices}", "--num_seeds=4", f"--num_devices={devices}",
                     "--config.online_steps=60", "--config.eval_interval=60", "--config.log_interval=30",
                     "--config.pretrain_steps=60", "--config.steps_per_call=30", "--config.checkpoint_interval=0")
            for devices in (1, 2)]
    out = subprocess.run([sys.executable, "-c", SHARDED_RUNS, json.dumps(runs)], env=env, cwd=ROOT, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    agents = {}
    for devices in (1, 2):
        assert f"4 seed(s) on {devices} cpu device(s)" in out.stdout, out.stdout[-2000:]
        workdir = tmp_path / f"devices{devices}"
        agents[devices] = flax.serialization.msgpack_restore((workdir / "agent.msgpack").read_bytes())
        summary = json.loads((workdir / "summary.json").read_text())
        assert summary["online_episodes_per_seed"] == [2, 2, 2, 2]
    chex.assert_trees_all_close(agents[1], agents[2], atol=1e-5)


@pytest.mark.slow
def test_two_processes_under_jax_distributed_equal_one_process(toy, tmp_path):
    """The multi-host path on one machine: fine-tuning over two processes joined by
    jax.distributed (one CPU device and one seed each: their own envs, their buffer rows,
    gathered results) trains seeds 3 and 4 exactly as one process does, in both phases (the
    offline one is train_offline.train under the same harness/setup.py as train_offline.py)."""
    args = toy_args(toy, tmp_path / "one", "--seed=3", "--num_seeds=2", "--config.online_steps=60", "--config.eval_interval=60",
                    "--config.log_interval=30", "--config.pretrain_steps=60", "--config.steps_per_call=30",
                    "--config.checkpoint_interval=0")
    run_main(train_finetune, *args)
    two = [a.replace(str(tmp_path / "one"), str(tmp_path / "two")) for a in args]
    logs = run_processes(2, ["-c", SHARDED_FINETUNE, *two, "--distributed"], tmp_path)
    assert logs is None, logs
    one, other = read_csv(tmp_path / "one" / "eval.csv"), read_csv(tmp_path / "two" / "eval.csv")
    assert [(r["phase"], r["step"], r["seed"]) for r in other] == [(r["phase"], r["step"], r["seed"]) for r in one]
    np.testing.assert_allclose([float(r["return"]) for r in other], [float(r["return"]) for r in one], rtol=1e-4)
    summaries = [json.loads((tmp_path / d / "summary.json").read_text()) for d in ("one", "two")]
    assert summaries[0]["online_episodes_per_seed"] == summaries[1]["online_episodes_per_seed"] == [2, 2]
    saved = [flax.serialization.msgpack_restore((tmp_path / d / "agent.msgpack").read_bytes()) for d in ("one", "two")]
    chex.assert_trees_all_close(saved[0], saved[1], rtol=1e-5, atol=1e-5)
