"""tools.evaluate: a run's saved agents evaluated again reproduce the run's own evaluations."""

import json

import pytest
from conftest import ROOT, read_csv, run_main, toy_args

import train_finetune
import train_offline
from harness import cli
from tools import evaluate

SMOKE = f"--config={ROOT}/configs/iql_mujoco.py:smoke"


def rows_at(workdir, step: int) -> dict:
    """{(seed, beta or None): eval.csv row} at `step`."""
    return {(int(r["seed"]), float(r["beta"]) if "beta" in r else None): r
            for r in read_csv(workdir / "eval.csv") if int(r["step"]) == step}


def evaluated(workdir, tmp_path, *extra) -> dict:
    out = tmp_path / "evaluated.json"
    run_main(evaluate, f"--workdir={workdir}", f"--out={out}", *extra)
    return json.loads(out.read_text())


def test_a_checkpoint_and_the_final_agents_reproduce_the_runs_evaluations(finished_sweep, tmp_path):
    workdir = finished_sweep  # seeds 5 and 6 x beta 0 and 3
    for extra, step in ((["--step=100"], 100), ([], 200)):
        result = evaluated(workdir, tmp_path, *extra)
        assert result["step"] == step and result["episodes"] == 2
        expected = rows_at(workdir, step)
        assert len(result["members"]) == len(expected) == 4
        for member in result["members"]:
            row = expected[(member["seed"], member["beta"])]
            assert member["return"] == pytest.approx(float(row["return"]), rel=1e-6)
            assert member["normalized_score"] == pytest.approx(float(row["normalized_score"]), rel=1e-6)
        # The members differ (seeds and betas), so a match is not one agent's return repeated.
        assert len({round(m["return"], 6) for m in result["members"]}) > 1
    assert evaluated(workdir, tmp_path, "--episodes=5")["episodes"] == 5


def test_a_fine_tuned_runs_final_agents_reproduce_its_last_evaluation(toy, tmp_path):
    workdir = tmp_path / "ft"
    run_main(train_finetune, *toy_args(toy, workdir))
    last = read_csv(workdir / "eval.csv")[-1]
    result = evaluated(workdir, tmp_path)
    assert result["step"] == int(last["step"]) == 200
    assert result["members"][0]["return"] == pytest.approx(float(last["return"]), rel=1e-6)


def test_bad_workdirs_and_steps_are_named(minari_root, tmp_path):
    with pytest.raises(cli.UserError, match="config.json does not exist"):
        run_main(evaluate, f"--workdir={tmp_path / 'nothing'}")
    workdir = tmp_path / "run"
    run_main(train_offline, SMOKE, "--dataset=test/hopper/random-v0", f"--workdir={workdir}",
             "--config.hidden_dims=(16,16)", "--config.tensorboard=False")
    with pytest.raises(cli.UserError, match=r"no checkpoint of step 150; its checkpoints: \[100, 200\]"):
        run_main(evaluate, f"--workdir={workdir}", "--step=150")
    with pytest.raises(cli.UserError, match="--episodes must be > 0"):
        run_main(evaluate, f"--workdir={workdir}", "--episodes=0")
    (workdir / "agent.msgpack").unlink()
    with pytest.raises(cli.UserError, match="holds no final agents"):
        run_main(evaluate, f"--workdir={workdir}")
