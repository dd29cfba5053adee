"""tools/campaign.py end to end with --tiny on the CPU, so that it never first breaks on a GPU:
datasets built in parallel, the speed table, the budget phase stopped at the budget and resumed."""

import json
import os

import pytest
from conftest import read_csv, run_main

from tools import campaign, ledger


@pytest.mark.slow  # builds two datasets in processes and trains three runs in processes
def test_tiny_campaign_stops_at_its_budget_and_the_same_command_resumes_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    out, path = tmp_path / "campaign", tmp_path / "ledger.jsonl"
    args = ["--tiny", f"--out={out}", f"--ledger={path}"]
    run_main(campaign, *args, "--minutes=0.01")  # the budget ends during the speed phase: no run starts
    state = json.loads((out / "campaign.json").read_text())
    assert sorted(state["datasets"]["built"]) == ["campaign/hopper/random-v0", "campaign/walker2d/random-v0"]
    assert state["datasets"]["workers"] == min(2, os.cpu_count())
    assert [r["members"] for r in state["speed"]["iql"]] == [1, 2, 4]
    assert [r["env"] for r in state["speed"]["online"]] == ["Hopper-v5"]  # fine-tuning's loop in the set's env
    for row in state["speed"]["iql"] + state["speed"]["idql"] + state["speed"]["online"] + [state["speed"]["sweep"]]:
        assert row["steps_per_s"] > 0 and row["compile_s"] > 0
        assert row["member_updates_per_s"] == pytest.approx(row["steps_per_s"] * row["members"])
    assert state["runs"] == {} and state["status"].startswith("stopped at the budget")

    run_main(campaign, *args, "--minutes=10")  # resumes: datasets and speed kept, the runs trained
    again = json.loads((out / "campaign.json").read_text())
    assert again["speed"] == state["speed"] and again["status"] == "complete"
    assert sorted(again["runs"]) == ["idql-hopper-random-v0", "iql-hopper-random-v0", "iql-walker2d-random-v0"]
    first = again["runs"]["iql-hopper-random-v0"]
    assert [p["hyperparameters"] for p in first["points"]] == [{"beta": 0.0}, {"beta": 3.0}]
    evals = read_csv(out / "runs" / "iql-hopper-random-v0" / "eval.csv")
    assert {r["seed"] for r in evals} == {"0", "1"} and {int(r["step"]) for r in evals} == {100, 200}
    rows = ledger.read(str(path))
    assert [(r["dataset"], r["algorithm"]) for r in rows] == [
        ("campaign/hopper/random-v0", "BC"), ("campaign/hopper/random-v0", "IQL"),
        ("campaign/walker2d/random-v0", "BC"), ("campaign/walker2d/random-v0", "IQL"),
        ("campaign/hopper/random-v0", "IDQL")]
    printed = capsys.readouterr().out
    assert "| IQL update_n | 4 |" in printed and "| fine-tuning env steps (utd 1) | 1 |" in printed
