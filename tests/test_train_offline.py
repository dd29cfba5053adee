"""train_offline.main in-process on a :smoke config over datasets the tests build."""

import glob
import json
import os
import signal

import jax
import numpy as np
import pytest
from conftest import ROOT, parse_flags, read_csv, run_main

import train_offline
from harness import algorithms, cli, multiseed, outputs
from learner import IQLLearner

SMOKE = f"--config={ROOT}/configs/iql_mujoco.py:smoke"


def test_main_trains_and_writes_everything(minari_root, tmp_path):
    workdir = tmp_path / "run"
    run_main(train_offline, SMOKE, "--dataset=test/hopper/random-v0", f"--workdir={workdir}", "--seed=3",
             "--config.hidden_dims=(16,16)")

    config = json.loads((workdir / "config.json").read_text())
    assert config["config"]["hidden_dims"] == [16, 16] and config["flags"]["seed"] == 3
    assert config["dataset"]["size"] == 600

    train = read_csv(workdir / "train.csv")
    assert [int(r["step"]) for r in train] == [50, 100, 150, 200]
    assert {"critic_loss", "value_loss", "actor_loss", "adv_mean"} <= set(train[0])
    assert all(r["seed"] == "3" and np.isfinite(float(r["critic_loss"])) for r in train)

    evals = read_csv(workdir / "eval.csv")
    assert [int(r["step"]) for r in evals] == [100, 200]
    assert list(evals[0])[:4] == ["step", "seed", "return", "normalized_score"]
    ref_min, ref_max = config["dataset"]["ref_min_score"], config["dataset"]["ref_max_score"]
    for r in evals:  # the normalised score is x100 of the raw return, as named
        expected = 100 * (float(r["return"]) - ref_min) / (ref_max - ref_min)
        assert float(r["normalized_score"]) == pytest.approx(expected)

    events = glob.glob(str(workdir / "tb" / "seed_3" / "events.out.tfevents.*"))
    assert len(events) == 1 and b"eval/normalized_score" in open(events[0], "rb").read()

    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["metric"] == "normalized_score"
    assert summary["last_mean"] == pytest.approx(float(evals[-1]["normalized_score"]))
    assert summary["best_mean"] == pytest.approx(max(float(r["normalized_score"]) for r in evals))

    # The saved (stacked) agents load back into a template of freshly created ones.
    template = multiseed.stack([IQLLearner.create(jax.random.key(3), np.zeros(11), np.zeros(3), IQLLearner.fields(_smoke_config()))])
    agent = multiseed.unstack(outputs.load_pytree(str(workdir / "agent.msgpack"), template), 0)
    assert int(agent.actor.step) == 200
    obs = np.zeros((4, 11), np.float32)
    assert agent.sample_actions(obs, jax.random.key(0), 0.0).shape == (4, 3)
    assert summary["eval_time_fraction"] > 0 and summary["wall_time_s"] > 0


def _smoke_config():
    from configs import iql_mujoco

    config = iql_mujoco.get_config("smoke")
    config.hidden_dims = (16, 16)
    return config


@pytest.mark.slow  # five runs
def test_d4rl_named_file_evaluates_in_the_v4_env_and_other_files_need_env_name(tmp_path, capsys):
    import h5py

    rng = np.random.default_rng(0)
    n = 300
    arrays = {"observations": rng.standard_normal((n, 11)).astype(np.float32),
              "actions": rng.uniform(-1, 1, (n, 3)).astype(np.float32),
              "rewards": rng.standard_normal(n).astype(np.float32),
              "terminals": (np.arange(n) % 50 == 49).astype(np.float32), "timeouts": np.zeros(n, np.float32)}
    for name in ("hopper-random-v2.hdf5", "my-data.hdf5"):
        with h5py.File(tmp_path / name, "w") as f:
            for k, v in arrays.items():
                f[k] = v
    with pytest.raises(cli.UserError, match="--env_name"):
        run_main(train_offline, SMOKE, f"--dataset={tmp_path / 'my-data.hdf5'}", f"--workdir={tmp_path / 'run'}")
    # A file named after a D4RL env needs no --env_name: its -v4 env, said in the first lines.
    capsys.readouterr()
    run_main(train_offline, SMOKE, f"--dataset={tmp_path / 'hopper-random-v2.hdf5'}", f"--workdir={tmp_path / 'run2'}",
             "--config.max_steps=100", "--config.eval_episodes=1", "--config.tensorboard=False")
    assert "evaluating in Hopper-v4" in capsys.readouterr().out
    evals = read_csv(tmp_path / "run2" / "eval.csv")
    assert len(evals) == 1 and evals[0]["normalized_score"] != ""
    # --env_name wins; a v5 env for a D4RL file gets a note.
    run_main(train_offline, SMOKE, f"--dataset={tmp_path / 'hopper-random-v2.hdf5'}", f"--workdir={tmp_path / 'run3'}",
             "--env_name=Hopper-v5", "--config.max_steps=50", "--config.steps_per_call=50", "--config.log_interval=50",
             "--config.eval_interval=50", "--config.checkpoint_interval=50", "--config.eval_episodes=1",
             "--config.tensorboard=False")
    assert "Hopper-v5 changed some MuJoCo models" in capsys.readouterr().out
    # A file merely named like D4RL data (other shapes) trains without evaluation, or is refused with it.
    with h5py.File(tmp_path / "hopper-mine.hdf5", "w") as f:
        for k, v in arrays.items():
            f[k] = v[:, :5] if k == "observations" else v
    short = [SMOKE, f"--dataset={tmp_path / 'hopper-mine.hdf5'}", "--config.max_steps=50", "--config.steps_per_call=50",
             "--config.log_interval=50", "--config.eval_interval=50", "--config.checkpoint_interval=50",
             "--config.tensorboard=False"]
    with pytest.raises(cli.UserError, match="observes shape"):
        run_main(train_offline, *short, f"--workdir={tmp_path / 'run4'}")
    run_main(train_offline, *short, f"--workdir={tmp_path / 'run5'}", "--config.eval_episodes=0")
    assert "does not fit the data" in capsys.readouterr().out
    assert (tmp_path / "run5" / "agent.msgpack").exists()


def test_file_actions_are_mapped_from_the_env_name_bounds(tmp_path):
    import toy_env

    data = tmp_path / "wide.npz"
    toy_env.left_only_dataset(data, episodes=10)
    with np.load(data) as f:
        arrays = dict(f)
    arrays["actions"] = arrays["actions"] * 3.0  # recorded in the raw [-3, 3] env: actions in [-3, 0]
    arrays["actions"][0] = -3.1  # a little outside: clipped and counted
    np.savez(data, **arrays)
    workdir = tmp_path / "run"
    run_main(train_offline, SMOKE, f"--dataset={data}", f"--env_name={toy_env.register_wide()}", f"--workdir={workdir}",
             "--config.hidden_dims=(16,16)", "--config.tensorboard=False", "--config.reward_transform=none")
    saved = json.loads((workdir / "config.json").read_text())["dataset"]
    assert saved["actions"]["low"] == [-3.0] and saved["actions"]["rescaled_to_unit_box"]
    assert saved["actions"]["clipped_rows"] == 1 and saved["actions"]["max_violation"] == pytest.approx(0.1, abs=1e-5)
    assert saved["dropped_timeout_rows"] == 10  # one per episode, as d4rl.qlearning_dataset
    assert saved["size"] == 10 * (toy_env.STEPS - 1)
    assert len(read_csv(workdir / "eval.csv")) == 2


def test_unknown_dataset_is_a_clear_error(minari_root, tmp_path):
    with pytest.raises(cli.UserError, match="nobody/hopper/nothing-v0"):
        run_main(train_offline, SMOKE, "--dataset=nobody/hopper/nothing-v0", f"--workdir={tmp_path / 'w'}")


def test_config_typo_fails_at_parse():
    with pytest.raises(cli.UserError, match='(?s)expectilee.*Did you mean "expectile"'):
        parse_flags(train_offline, SMOKE, "--config.expectilee=0.8")


def test_a_typo_in_a_config_file_is_an_error_naming_the_nearest_field(tmp_path):
    path = tmp_path / "typo.py"
    path.write_text("from configs import iql_mujoco\n\n\ndef get_config(variant=''):\n"
                    "    config = iql_mujoco.get_config('smoke')\n    config.expetile = 0.9\n    return config\n")
    with pytest.raises(cli.UserError, match="config.expetile is not read by this run.*did you mean config.expectile"):
        run_main(train_offline, f"--config={path}", f"--workdir={tmp_path / 'w'}")
    assert not (tmp_path / "w").exists()  # refused before anything is written


def test_every_shipped_config_field_is_read_by_its_run():
    """The agent, data and loop fields of each config file are exactly what its script reads."""
    from configs import (idql_antmaze, idql_mujoco, idql_mujoco_finetune, iql_antmaze, iql_antmaze_finetune,
                         iql_kitchen, iql_mujoco, iql_mujoco_finetune)
    import train_finetune

    finetune_loop = tuple(f for f in algorithms.OFFLINE_FIELDS if f != "max_steps") + train_finetune.FINETUNE_FIELDS
    for module, loop in ((iql_mujoco, algorithms.OFFLINE_FIELDS), (iql_antmaze, algorithms.OFFLINE_FIELDS),
                         (iql_kitchen, algorithms.OFFLINE_FIELDS), (idql_mujoco, algorithms.OFFLINE_FIELDS),
                         (idql_antmaze, algorithms.OFFLINE_FIELDS), (iql_mujoco_finetune, finetune_loop),
                         (iql_antmaze_finetune, finetune_loop), (idql_mujoco_finetune, finetune_loop)):
        for variant in ("", "smoke"):
            config = module.get_config(variant)
            agent = algorithms.ALGORITHMS[config.algo].agent_class
            cli.check_fields(config, {*agent.fields(dict.fromkeys(config)), *algorithms.DATA_FIELDS, *loop})
            assert ("beta" in config) == (config.algo == "iql")  # IDQL's configs never held IQL's actor fields


@pytest.mark.parametrize("override,message", [
    ("--config.expectile=1.5", "config.expectile must be in \\(0, 1\\)"),
    ("--config.log_interval=70", "not a multiple of config.steps_per_call"),
    ("--config.batch_size=100000", "larger than the dataset"),
    ("--config.reward_transform=lcomotion", "unknown reward_transform 'lcomotion'"),
])
def test_bad_config_values_are_named(minari_root, tmp_path, override, message):
    with pytest.raises(cli.UserError, match=message):
        run_main(train_offline, SMOKE, "--dataset=test/hopper/random-v0", f"--workdir={tmp_path / 'w'}", override)


def test_existing_run_is_not_overwritten(minari_root, tmp_path):
    workdir = tmp_path / "w"
    workdir.mkdir()
    (workdir / "eval.csv").write_text("step,seed\n5,0\n")
    with pytest.raises(cli.UserError, match="already holds a run"):
        run_main(train_offline, SMOKE, "--dataset=test/hopper/random-v0", f"--workdir={workdir}")
    assert (workdir / "eval.csv").read_text() == "step,seed\n5,0\n"


def test_two_seeds_in_one_process(minari_root, tmp_path):
    workdir = tmp_path / "run"
    run_main(train_offline, SMOKE, "--dataset=test/hopper/random-v0", f"--workdir={workdir}", "--seed=3", "--num_seeds=2",
             "--config.hidden_dims=(16,16)", "--config.tensorboard=False")
    train = read_csv(workdir / "train.csv")
    assert [(int(r["step"]), int(r["seed"])) for r in train[:4]] == [(50, 3), (50, 4), (100, 3), (100, 4)]
    assert train[0]["critic_loss"] != train[1]["critic_loss"]  # the seeds train differently
    evals = read_csv(workdir / "eval.csv")
    assert [(int(r["step"]), int(r["seed"])) for r in evals] == [(100, 3), (100, 4), (200, 3), (200, 4)]
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["num_seeds"] == 2 and set(summary["per_seed"]) == {"3", "4"}
    last = [float(r["normalized_score"]) for r in evals[2:]]
    assert summary["last_mean"] == pytest.approx(np.mean(last)) and summary["last_std"] == pytest.approx(np.std(last))


def test_video_of_one_evaluation_episode(tmp_path):
    """--video renders the first seed's final evaluation episode to video.mp4 (here the toy
    env's own frames, so no GL is needed)."""
    import imageio.v2 as imageio
    import toy_env

    data = tmp_path / "left.npz"
    toy_env.left_only_dataset(data, episodes=10)
    workdir = tmp_path / "run"
    run_main(train_offline, SMOKE, f"--dataset={data}", f"--env_name={toy_env.register()}", f"--workdir={workdir}", "--video",
             "--num_seeds=2", "--config.hidden_dims=(16,16)", "--config.tensorboard=False")
    with imageio.get_reader(str(workdir / "video.mp4")) as reader:
        frames = [frame for frame in reader]
        fps = reader.get_meta_data()["fps"]
    assert len(frames) == toy_env.STEPS + 1 and frames[0].shape == (32, 64, 3) and fps == 10
    assert not list(workdir.glob("*.tmp.mp4"))


def test_overrides_without_an_explicit_config_file():
    parse_flags(train_offline, "--config.max_steps=1234", "--config.beta=0.5")
    assert train_offline.FLAGS.config.max_steps == 1234 and train_offline.FLAGS.config.beta == 0.5
    assert train_offline.FLAGS.config.expectile == 0.7  # the default file, iql_mujoco.py
    parse_flags(train_offline, SMOKE, "--config.max_steps=300")
    assert train_offline.FLAGS.config.max_steps == 300 and train_offline.FLAGS.config.hidden_dims == (32, 32)


def test_signal_handlers_are_restored_when_a_run_ends(minari_root, tmp_path, monkeypatch):
    """A run catches SIGINT/SIGTERM only while it runs: afterwards (finished or stopped) the
    process's own handlers are back, so Ctrl-C works again in a notebook or a test."""
    caught = []
    mine = lambda signum, frame: caught.append(signum)  # noqa: E731
    before = {sig: signal.signal(sig, mine) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        args = [SMOKE, "--dataset=test/hopper/random-v0", "--config.hidden_dims=(16,16)", "--config.tensorboard=False"]
        run_main(train_offline, *args, f"--workdir={tmp_path / 'finished'}", "--config.max_steps=100")
        assert signal.getsignal(signal.SIGINT) is mine and signal.getsignal(signal.SIGTERM) is mine

        # A run stopped by SIGINT (sent from inside its loop) saves, stops and gives them back too.
        write_seeds = outputs.MetricsWriter.write_seeds
        monkeypatch.setattr(outputs.MetricsWriter, "write_seeds",
                            lambda self, *a, **k: (write_seeds(self, *a, **k), os.kill(os.getpid(), signal.SIGINT)))
        with pytest.raises(cli.Stopped, match="stopped by SIGINT at step 50"):
            run_main(train_offline, *args, f"--workdir={tmp_path / 'stopped'}")
        assert caught == []  # the run's handler took that one
        os.kill(os.getpid(), signal.SIGINT)
        assert caught == [signal.SIGINT] and signal.getsignal(signal.SIGTERM) is mine
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
