"""Runs that survive: kill and resume, SIGTERM, atomic checkpoints, the NaN guard, config changes."""

import json
import os
import signal
import subprocess
import sys
import time

import flax.serialization
import numpy as np
import pytest
from conftest import ROOT, read_csv, run_main, toy_args

import train_finetune
import train_offline
from harness import cli, outputs

ARGS = [f"--config={ROOT}/configs/iql_mujoco.py:smoke", "--dataset=test/hopper/random-v0",
        "--config.hidden_dims=(16,16)", "--config.tensorboard=False", "--config.max_steps=6000",
        "--config.checkpoint_interval=600", "--config.eval_interval=600", "--config.log_interval=300"]


def start_and_stop(workdir, sig):
    """Start train_offline in a subprocess, send `sig` once the step-600 checkpoint exists."""
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "train_offline.py"), *ARGS, f"--workdir={workdir}"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = workdir / "checkpoints" / "ckpt_000000600.msgpack"
    deadline = time.time() + 240
    while not first.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


@pytest.fixture(scope="module")
def uninterrupted(minari_root, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("resume") / "straight"
    run_main(train_offline, *ARGS, f"--workdir={workdir}")
    return workdir


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_stopped_and_resumed_run_equals_the_uninterrupted_one(uninterrupted, tmp_path, sig):
    workdir = tmp_path / "stopped"
    code, err = start_and_stop(workdir, sig)
    assert not (workdir / "summary.json").exists(), "the run ended before it was stopped"
    if sig == signal.SIGTERM:  # preemption: it saved where it was, said how to resume, and did not fail
        assert "stopped by SIGTERM at step" in err and "run the same command again to resume" in err
        assert code == 0 and "error" not in err.lower(), err[-2000:]
    else:
        assert code != 0
    run_main(train_offline, *ARGS, f"--workdir={workdir}")  # the same command resumes
    a, b = (open(d / "agent.msgpack", "rb").read() for d in (uninterrupted, workdir))
    assert a == b  # bit for bit: parameters, optimizer states, keys
    for name in ("train.csv", "eval.csv"):
        assert read_csv(uninterrupted / name) == read_csv(workdir / name)
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["last_mean"] == json.loads((uninterrupted / "summary.json").read_text())["last_mean"]


def test_changed_config_is_refused_unless_allowed(uninterrupted, tmp_path):
    workdir = tmp_path / "copy"
    os.makedirs(workdir / "checkpoints")
    for name in ("config.json", "checkpoints/ckpt_000006000.msgpack"):
        (workdir / name).write_bytes((uninterrupted / name).read_bytes())
    with pytest.raises(cli.UserError, match=r"different config\.beta.*--allow_config_change"):
        run_main(train_offline, *ARGS, f"--workdir={workdir}", "--config.beta=1.0")
    with pytest.raises(cli.UserError, match=r"different --seed"):
        run_main(train_offline, *ARGS, f"--workdir={workdir}", "--seed=5")
    run_main(train_offline, *ARGS, f"--workdir={workdir}", "--config.beta=1.0", "--allow_config_change")
    assert (workdir / "summary.json").exists()


def test_interrupted_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    checkpointer = outputs.Checkpointer(str(tmp_path), keep=3)
    template = {"w": np.zeros(3), "step": 0}
    checkpointer.save(100, {"w": np.arange(3.0), "step": 100})

    def crash(*args):
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        checkpointer.save(200, {"w": np.full(3, 7.0), "step": 200})
    monkeypatch.undo()
    assert checkpointer.steps() == [100]
    # A truncated newer file (e.g. a disk that filled up) is skipped too.
    with open(checkpointer.path(300), "wb") as f:
        f.write(flax.serialization.to_bytes({"w": np.ones(3), "step": 300})[:10])
    step, state = checkpointer.restore(template)
    assert step == 100 and np.array_equal(state["w"], np.arange(3.0))


def test_checkpoints_keep_the_newest_few(tmp_path):
    checkpointer = outputs.Checkpointer(str(tmp_path), keep=2)
    for step in (1, 2, 3):
        checkpointer.save(step, {"step": step})
    assert checkpointer.steps() == [3, 2]


def test_nan_guard_stops_with_a_clean_last_checkpoint(minari_root, tmp_path):
    workdir = tmp_path / "diverge"
    # A critic learning rate of 1e30 makes its first Adam step ~1e30 per weight, so a later forward pass overflows on any
    # CPU (rates of 1000 stayed finite for 100 steps on some machines).
    with pytest.raises(cli.UserError, match=r"non-finite .* in step \d+; stopped; the last good checkpoint is"):
        run_main(train_offline, *ARGS[:4], f"--workdir={workdir}", "--config.max_steps=100", "--config.steps_per_call=1",
            "--config.log_interval=1", "--config.checkpoint_interval=1", "--config.eval_interval=100",
            "--config.critic_lr=1e30")
    steps = outputs.Checkpointer(str(workdir)).steps()
    assert steps and steps[0] < 100
    with open(outputs.Checkpointer(str(workdir)).path(steps[0]), "rb") as f:
        state = flax.serialization.msgpack_restore(f.read())
    leaves = [np.asarray(x) for x in _leaves(state["agents"]) if np.asarray(x).dtype.kind == "f"]
    assert leaves and all(np.isfinite(x).all() for x in leaves)


def _leaves(tree):
    if isinstance(tree, dict):
        for v in tree.values():
            yield from _leaves(v)
    else:
        yield tree


def test_fine_tuning_resume_restores_buffer_and_env_steps(toy, tmp_path):
    workdir = tmp_path / "ft"
    common = ["--config.online_steps=60", "--config.steps_per_call=10", "--config.eval_interval=60", "--config.log_interval=30",
              "--config.checkpoint_interval=30"]
    run_main(train_finetune, *toy_args(toy, workdir, *common))
    newest = outputs.Checkpointer(str(workdir)).steps()[0]
    with open(outputs.Checkpointer(str(workdir)).path(newest), "rb") as f:
        state = flax.serialization.msgpack_restore(f.read())
    assert int(state["online"]) == 1 and int(state["env_step"]) == 60
    offline_rows = 60 * 29  # the toy dataset: 60 episodes of 30 steps, less their timeout rows
    assert int(np.asarray(state["online_state"]["buffers"]["size"])[0]) == offline_rows + 60
    # Continue the same run for 60 more env steps: buffer and counters carry on.
    run_main(train_finetune, *toy_args(toy, workdir, *common[1:], "--config.online_steps=120", "--allow_config_change"))
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["online_env_steps"] == 120 and summary["online_episodes_per_seed"] == [4]
    with open(outputs.Checkpointer(str(workdir)).path(outputs.Checkpointer(str(workdir)).steps()[0]), "rb") as f:
        state = flax.serialization.msgpack_restore(f.read())
    assert int(state["env_step"]) == 120 and int(np.asarray(state["online_state"]["buffers"]["size"])[0]) == offline_rows + 120
    evals = read_csv(workdir / "eval.csv")
    assert [int(r["env_steps"]) for r in evals if r["phase"] == "online"] == [60, 120]


def test_a_resumed_csv_keeps_its_rows_up_to_the_checkpoint_and_its_columns(tmp_path):
    (tmp_path / "eval.csv").write_text("step,seed,return\n100,0,1.5\n200,0,2.5\n300,0,9.0\n")
    writer = outputs.MetricsWriter(str(tmp_path), tensorboard=False, resume_step=200)
    writer.write("eval", 300, 0, {"return": 3.5})
    rows = read_csv(tmp_path / "eval.csv")
    assert [r["step"] for r in rows] == ["100", "200", "300"]  # the row past the checkpoint is dropped
    assert rows[-1]["return"] == "3.5" and list(rows[-1]) == ["step", "seed", "return"]
    with pytest.raises(ValueError, match="no column"):  # within one run the columns stay fixed
        writer.write("eval", 400, 0, {"return": 4.5, "typo": 1.0})
