"""tools/ledger.py: a finished run's rows, the table generated from them, and the README's
results table, which must be the one the ledger generates."""

import json

import pytest
from conftest import ROOT

from harness import cli
from tools import ledger


def test_the_readme_table_is_the_one_the_ledger_generates():
    assert ledger.readme_table(f"{ROOT}/README.md") == ledger.table(ledger.read(ledger.LEDGER))


@pytest.fixture
def sweep_run(finished_sweep):
    """A finished BC + IQL sweep (beta 0 and 3) of seeds 5 and 6 on the smoke config, 200 steps."""
    return finished_sweep


def test_a_sweep_run_adds_a_row_per_point_and_adding_again_replaces_them(sweep_run, tmp_path):
    path = str(tmp_path / "ledger.jsonl")
    rows = ledger.add([str(sweep_run)], path)
    assert [r["algorithm"] for r in rows] == ["BC", "IQL"]
    summary = json.loads((sweep_run / "summary.json").read_text())
    for row, point in zip(rows, summary["points"]):
        assert row["dataset"] == "test/hopper/random-v0" and row["seeds"] == [5, 6] and row["steps"] == 200
        assert row["config"] == "configs/iql_mujoco.py:smoke"
        assert row["overrides"] == {"hidden_dims": [16, 16], "tensorboard": False,
                                    "beta": point["hyperparameters"]["beta"]}
        assert row["last"]["mean"] == pytest.approx(point["last_mean"])
        assert sorted(row["last"]["per_seed"]) == ["5", "6"] and row["eval_episodes"] == 2
        assert row["hardware"]["platform"] == "cpu" and row["hardware"]["cores"] >= 1
        assert "train_offline" in row["command"] and row["wall_time_s"] > 0
    ledger.add([str(sweep_run)], path)
    assert len(ledger.read(path)) == 2


def test_the_table_keeps_shipped_configs_and_pools_bc_and_iql_in_one_line(sweep_run, tmp_path):
    rows = ledger.add([str(sweep_run)], str(tmp_path / "ledger.jsonl"))
    assert ledger.table(rows).count("\n") == 2  # a :smoke run changes the config: the header only
    for row in rows:  # as if the shipped config had run, with only the budget overridden
        row["config"], row["overrides"] = "configs/iql_mujoco.py", {"max_steps": 200, "beta": row["overrides"]["beta"]}
    lines = ledger.table(rows).splitlines()
    assert lines[0].startswith("| dataset | config | steps | seeds | BC | IQL |") and len(lines) == 3
    bc, iql = (r["last"] for r in rows)
    assert f"| {bc['mean']:.1f} ± {bc['std']:.1f} | {iql['mean']:.1f} ± {iql['std']:.1f} |" in lines[2]
    longer = [dict(r, steps=1000, last={"mean": 50.0 + i, "std": 0.0}) for i, r in enumerate(rows)]
    lines = ledger.table(rows + longer).splitlines()  # the largest budget stands for the dataset x config
    assert len(lines) == 3 and "| 1,000 | 2 | 50.0 ± 0.0 | 51.0 ± 0.0 |" in lines[2]
    assert len(ledger.table(rows + longer, every_budget=True).splitlines()) == 4
    rows[1]["overrides"]["expectile"] = 0.8  # a changed hyperparameter: ledger only
    assert "| IQL |" not in ledger.table(rows).splitlines()[0]


def test_write_replaces_only_the_marked_block_and_unfinished_runs_are_refused(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\n{ledger.BEGIN}\nold\n{ledger.END}\n\nafter\n")
    ledger.write_table("| new |\n", str(readme))
    assert readme.read_text() == f"# title\n\n{ledger.BEGIN}\n| new |\n{ledger.END}\n\nafter\n"
    with pytest.raises(cli.UserError, match="no finished run"):
        ledger.add([str(tmp_path)], str(tmp_path / "ledger.jsonl"))
