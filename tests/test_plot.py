"""plot.py on synthetic work directories, and suite.py end to end on a tiny dataset."""

import json
import os
import struct

import numpy as np
import pytest
from conftest import run_main

from harness import cli
from tools import ledger, plot, suite


def make_workdir(path, dataset, config, scores):
    """A work directory as train_offline writes it; scores: {seed: [(step, normalised score)]}."""
    os.makedirs(path)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump({"config": config, "flags": {"dataset": dataset}}, f)
    with open(os.path.join(path, "eval.csv"), "w") as f:
        f.write("step,seed,return,normalized_score,return_std\n")
        for seed, points in scores.items():
            for step, score in points:
                f.write(f"{step},{seed},{score * 10},{score},1.0\n")


def png_size(path):
    with open(path, "rb") as f:
        header = f.read(24)
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", header[16:24])  # IHDR width, height


def test_plot_writes_png_and_a_table_matching_the_csvs(tmp_path, capsys):
    iql = {"algo": "iql", "beta": 3.0}
    bc = {"algo": "iql", "beta": 0.0}
    # IQL on hopper: two seeds in one run; BC on hopper: seeds in two separate runs (pooled).
    make_workdir(tmp_path / "iql_h", "local/hopper/medium-v0", iql,
                 {0: [(10, 20.0), (20, 50.0), (30, 40.0)], 1: [(10, 30.0), (20, 35.0), (30, 60.0)]})
    make_workdir(tmp_path / "bc_h0", "local/hopper/medium-v0", bc, {0: [(10, 10.0), (20, 30.0), (30, 25.0)]})
    make_workdir(tmp_path / "bc_h1", "local/hopper/medium-v0", bc, {1: [(10, 15.0), (20, 20.0), (30, 35.0)]})
    make_workdir(tmp_path / "iql_w", "local/walker2d/medium-v0", iql, {0: [(10, 5.0), (20, 7.0)]})
    out, table_out = tmp_path / "figs" / "curves.png", tmp_path / "results.md"
    run_main(plot, f"--workdirs={tmp_path}/*", f"--out={out}", f"--table_out={table_out}", "--panel_width=320",
             "--panel_height=240", "--columns=3")

    assert png_size(out) == (2 * 320, 240)  # two datasets -> two panels in one row
    text = table_out.read_text()
    assert text in capsys.readouterr().out
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in text.splitlines() if line.startswith("| local/")}
    assert text.splitlines()[0] == "| dataset | BC | IQL |"  # the papers' column order
    # By hand: IQL hopper finals 40, 60 -> 50 +- 10; bests 50, 60 -> 55 +- 5.
    # BC hopper finals 25, 35 -> 30 +- 5; bests 30, 35 -> 32.5 +- 2.5.
    assert rows["local/hopper/medium-v0"] == ["30.0 ± 5.0 (32.5 ± 2.5)", "50.0 ± 10.0 (55.0 ± 5.0)"]
    assert rows["local/walker2d/medium-v0"] == ["", "7.0 (7.0)"]  # one seed: no spread shown
    assert "IQL on local/hopper/medium-v0: 2 seed(s), final evaluation at step 30" in text


def test_plot_curve_is_the_mean_and_std_over_seeds():
    rows = [{"step": s, "seed": seed, "normalized_score": v, "return": 0.0}
            for seed, values in enumerate([[1.0, 2.0], [3.0, 6.0]]) for s, v in zip((5, 10), values)]
    steps, mean, std, counts = plot.curve(rows, "normalized_score")
    np.testing.assert_array_equal(steps, [5, 10])
    np.testing.assert_allclose(mean, [2.0, 4.0])
    np.testing.assert_allclose(std, [1.0, 2.0])
    np.testing.assert_array_equal(counts, [2, 2])


def test_plot_errors(tmp_path):
    with pytest.raises(cli.UserError, match="nothing matches"):
        run_main(plot, f"--workdirs={tmp_path}/nothing*")
    make_workdir(tmp_path / "a", "d", {"algo": "iql", "beta": 3.0}, {0: [(10, 1.0)]})
    make_workdir(tmp_path / "b", "d", {"algo": "iql", "beta": 3.0}, {0: [(10, 2.0)]})
    with pytest.raises(cli.UserError, match="seed 0 of IQL on d is in both"):
        run_main(plot, f"--workdirs={tmp_path / 'a'},{tmp_path / 'b'}", "--out=")
    with pytest.raises(cli.UserError, match="--labels has 1 entries for 2"):
        run_main(plot, f"--workdirs={tmp_path / 'a'},{tmp_path / 'b'}", "--labels=x", "--out=")
    run_main(plot, f"--workdirs={tmp_path / 'a'},{tmp_path / 'b'}", "--labels=x,y", "--out=")  # labels split them
    with pytest.raises(cli.UserError, match="config.json is missing"):
        run_main(plot, f"--workdirs={tmp_path}")


@pytest.mark.slow  # three training subprocesses
def test_suite_runs_iql_bc_idql_sweeps_then_plots_and_skips_finished_runs(minari_root, tmp_path, capsys):
    root, path = tmp_path / "suite", tmp_path / "ledger.jsonl"
    args = ["--smoke", "--datasets=test/hopper/random-v0", "--steps=100", "--num_seeds=1", "--eval_episodes=1",
            "--sweep=expectile=0.7,0.8", f"--root={root}", "--override=--config.hidden_dims=(16,16)",
            "--override=--config.tensorboard=False", f"--ledger={path}"]
    run_main(suite, *args)
    for algo in ("iql", "bc", "idql"):  # each run trains the whole grid in one process
        summary = json.loads((root / algo / "hopper-random" / "summary.json").read_text())
        assert summary["steps"] == 100 and summary["num_seeds"] == 1
        assert [p["hyperparameters"] for p in summary["points"]] == [{"expectile": 0.7}, {"expectile": 0.8}]
    saved = json.loads((root / "bc" / "hopper-random" / "config.json").read_text())
    assert saved["config"]["beta"] == 0.0 and saved["config"]["hidden_dims"] == [16, 16]
    assert saved["config"]["eval_interval"] == 50 and saved["config"]["checkpoint_interval"] == 50
    rows = ledger.read(str(path))  # each finished run, a row per point
    assert [(r["algorithm"], r["overrides"]["expectile"]) for r in rows] == [
        ("IQL", 0.7), ("IQL", 0.8), ("BC", 0.7), ("BC", 0.8), ("IDQL", 0.7), ("IDQL", 0.8)]
    assert all(r["steps"] == 100 for r in rows)
    assert png_size(root / "curves.png") == (400, 300)
    assert (root / "results.md").read_text().splitlines()[0] == (  # a column per point, the papers' order
        "| dataset | BC expectile=0.7 | BC expectile=0.8 | IQL expectile=0.7 | IQL expectile=0.8 | IDQL expectile=0.7 "
        "| IDQL expectile=0.8 |")

    # A second call finds every run finished: nothing retrains (the agents are untouched).
    before = {a: os.path.getmtime(root / a / "hopper-random" / "agent.msgpack") for a in ("iql", "bc", "idql")}
    capsys.readouterr()
    run_main(suite, *args)
    assert capsys.readouterr().out.count("finished earlier") == 3
    assert before == {a: os.path.getmtime(root / a / "hopper-random" / "agent.msgpack") for a in before}
    # Asking for a different budget in the same root is an error, not a silently old result.
    with pytest.raises(cli.UserError, match="finished with 100 steps, but 150 are asked"):
        run_main(suite, *[a for a in args if not a.startswith("--steps")], "--steps=150")


def test_suite_flag_errors(tmp_path):
    with pytest.raises(cli.UserError, match="unknown"):
        run_main(suite, "--algos=iql,cql", f"--root={tmp_path}")
    with pytest.raises(cli.UserError, match="not a multiple of its config's steps_per_call"):
        run_main(suite, "--steps=1500", f"--root={tmp_path}", "--datasets=x")
