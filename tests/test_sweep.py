"""Hyperparameter sweeps (harness/sweep.py): grid points are members of the seed axis."""

import json
import os
import re
import shutil

import chex
import flax.serialization
import jax
import numpy as np
import pytest
from conftest import ROOT, bandit_arrays, read_csv, run_main, toy_args

import dataset as dataset_lib
import train_finetune
import train_offline
from harness import algorithms, cli, devices, multiseed, sweep
from tools import plot

SMOKE = [f"--config={ROOT}/configs/iql_mujoco.py:smoke", "--dataset=test/hopper/random-v0",
         "--config.hidden_dims=(16,16)", "--config.tensorboard=False"]


def load(path):
    return flax.serialization.msgpack_restore(path.read_bytes())


def member(tree, j):
    return jax.tree.map(lambda x: np.asarray(x)[j], tree)


@pytest.mark.slow  # a 2x2 grid and a run alone
def test_a_member_of_a_2x2_sweep_equals_its_point_trained_alone(minari_root, tmp_path):
    run_main(train_offline, *SMOKE, f"--workdir={tmp_path / 'grid'}", "--seed=2", "--sweep=beta=1,5",
             "--sweep=actor_lr=3e-4,1e-3")
    run_main(train_offline, *SMOKE, f"--workdir={tmp_path / 'alone'}", "--seed=2", "--config.beta=5",
             "--config.actor_lr=1e-3")
    grid, alone = load(tmp_path / "grid" / "agent.msgpack"), load(tmp_path / "alone" / "agent.msgpack")
    # Point-major members: (1, 3e-4), (1, 1e-3), (5, 3e-4), (5, 1e-3); the last is the run alone
    # (a vmap of 4 against the single-agent program: rounding only).
    chex.assert_trees_all_close(member(grid, 3), member(alone, 0), atol=2e-4)
    assert np.abs(member(grid, 2)["actor"]["params"]["Dense_0"]["kernel"]
                  - member(alone, 0)["actor"]["params"]["Dense_0"]["kernel"]).max() > 1e-3  # the rate matters
    assert np.asarray(grid["beta"]).tolist() == [1, 1, 5, 5]
    rates = np.asarray(grid["actor"]["opt_state"]["hyperparams"]["learning_rate"])
    np.testing.assert_allclose(rates, [3e-4, 1e-3, 3e-4, 1e-3], rtol=1e-6)

    rows = read_csv(tmp_path / "grid" / "eval.csv")
    assert list(rows[0])[:4] == ["step", "seed", "beta", "actor_lr"]
    assert [(r["step"], r["seed"], float(r["beta"]), float(r["actor_lr"])) for r in rows[:4]] == [
        ("100", "2", 1.0, 3e-4), ("100", "2", 1.0, 1e-3), ("100", "2", 5.0, 3e-4), ("100", "2", 5.0, 1e-3)]
    last_alone = read_csv(tmp_path / "alone" / "eval.csv")[-1]
    assert float(rows[-1]["return"]) == pytest.approx(float(last_alone["return"]), rel=1e-3)

    summary = json.loads((tmp_path / "grid" / "summary.json").read_text())
    assert [p["hyperparameters"] for p in summary["points"]] == [
        {"beta": b, "actor_lr": lr} for b in (1.0, 5.0) for lr in (3e-4, 1e-3)]
    finals = [float(r["normalized_score"]) for r in rows[-4:]]
    assert [p["last_mean"] for p in summary["points"]] == pytest.approx(finals)
    assert summary["best_point"] == summary["points"][int(np.argmax(finals))]["hyperparameters"]
    assert summary["last_mean"] == pytest.approx(max(finals)) and summary["sweep"] == ["beta", "actor_lr"]

    # tools.plot: one curve and one table column per grid point.
    pooled = plot.group(plot.read_runs(str(tmp_path / "grid")))
    assert sorted(label for _, label in pooled) == ["IQL beta=1 actor_lr=0.0003", "IQL beta=1 actor_lr=0.001",
                                                    "IQL beta=5 actor_lr=0.0003", "IQL beta=5 actor_lr=0.001"]
    assert plot.table(pooled).splitlines()[0].count("IQL") == 4


def test_the_grid_compiles_once_and_values_stay_per_member(tiny_config):
    """The whole grid is one program; other values in the same agents do not retrace it."""
    data, _ = dataset_lib.from_arrays(**bandit_arrays(n=256))
    algorithm, mesh = algorithms.ALGORITHMS["iql"], multiseed.make_mesh(4)
    program = multiseed.compiled_update_n(mesh, 5, 32)
    before = program._cache_size()
    members = algorithms.run_members(algorithm, tiny_config, ["beta=0,3", "expectile=0.6,0.9"], 0, 1)
    agents = algorithms.create_agents(algorithm, tiny_config, data, members, mesh)
    for grid in (["beta=0,3", "expectile=0.6,0.9"], ["beta=1,10", "critic_lr=1e-3,3e-4"]):
        members = algorithms.run_members(algorithm, tiny_config, grid, 0, 1)
        agents = multiseed.shard_seeds(sweep.apply(agents, members), mesh)
        agents, _ = multiseed.update_n(agents, data, 5, 32)
        np.testing.assert_allclose(np.asarray(agents.beta), [p["beta"] for p in members.points])
    np.testing.assert_allclose(np.asarray(agents.expectile), [0.6, 0.9] * 2, rtol=1e-6)  # kept from the first grid
    np.testing.assert_allclose(np.asarray(agents.critic.opt_state.hyperparams["learning_rate"]), [1e-3, 3e-4] * 2)
    assert program._cache_size() - before == 1


def test_sweep_errors_name_the_problem(minari_root, tmp_path):
    cases = [("--sweep=betta=1,3", "config.betta is not a field of this run; did you mean beta?"),
             ("--sweep=hidden_dims=16,32", "shapes the compiled program"),
             ("--sweep=batch_size=64,128", "needs separate runs"),
             ("--sweep=beta", "expected field=value1,value2"),
             ("--sweep=beta=1,x", "must be numbers"),
             ("--sweep=expectile=0.5,1.5", "config.expectile must be in \\(0, 1\\), got 1.5")]
    for flag, message in cases:
        with pytest.raises(cli.UserError, match=message):
            run_main(train_offline, *SMOKE, f"--workdir={tmp_path / 'w'}", flag)
    with pytest.raises(cli.UserError, match="given twice"):
        run_main(train_offline, *SMOKE, f"--workdir={tmp_path / 'w'}", "--sweep=beta=1", "--sweep=beta=3")
    idql = [f"--config={ROOT}/configs/idql_mujoco.py:smoke", "--dataset=test/hopper/random-v0"]
    with pytest.raises(cli.UserError, match="num_samples shapes the compiled program"):
        run_main(train_offline, *idql, f"--workdir={tmp_path / 'w'}", "--sweep=num_samples=8,16")
    assert not (tmp_path / "w" / "eval.csv").exists()


@pytest.mark.slow  # ~1 min: two IDQL smoke runs
def test_an_idql_member_equals_its_point_trained_alone(minari_root, tmp_path):
    idql = [f"--config={ROOT}/configs/idql_mujoco.py:smoke", "--dataset=test/hopper/random-v0",
            "--config.tensorboard=False"]
    run_main(train_offline, *idql, f"--workdir={tmp_path / 'grid'}", "--sweep=expectile=0.6,0.9")
    run_main(train_offline, *idql, f"--workdir={tmp_path / 'alone'}", "--config.expectile=0.9")
    grid, alone = load(tmp_path / "grid" / "agent.msgpack"), load(tmp_path / "alone" / "agent.msgpack")
    np.testing.assert_allclose(np.asarray(grid["expectile"]), [0.6, 0.9], rtol=1e-6)
    chex.assert_trees_all_close(member(grid, 1), member(alone, 0), atol=2e-4, rtol=1e-3)  # vmapped vs alone: rounding
    value = lambda tree: np.concatenate([np.ravel(x) for x in jax.tree.leaves(tree["value"]["params"])])  # noqa: E731
    assert np.abs(value(member(grid, 0)) - value(member(alone, 0))).max() > 1e-3  # the expectile matters
    rows = read_csv(tmp_path / "grid" / "eval.csv")
    assert [float(r["expectile"]) for r in rows[-2:]] == pytest.approx([0.6, 0.9])
    assert float(rows[-1]["return"]) == pytest.approx(float(read_csv(tmp_path / "alone" / "eval.csv")[-1]["return"]),
                                                      rel=1e-3)


def test_a_diverging_member_is_named_by_its_hyperparameters(minari_root, tmp_path):
    with pytest.raises(cli.UserError, match=r"non-finite .* of seed 0 at critic_lr=1e\+30 in steps"):
        run_main(train_offline, *SMOKE, f"--workdir={tmp_path / 'w'}", "--sweep=critic_lr=3e-4,1e30")


def test_a_resumed_sweep_equals_the_uninterrupted_one(minari_root, tmp_path):
    args = [*SMOKE, "--sweep=expectile=0.6,0.8", "--num_seeds=2", "--config.checkpoint_interval=100"]
    run_main(train_offline, *args, f"--workdir={tmp_path / 'straight'}")
    # The same run stopped after its step-100 checkpoint: what it wrote later is removed.
    stopped = tmp_path / "stopped"
    shutil.copytree(tmp_path / "straight", stopped)
    for name in ("agent.msgpack", "summary.json", "checkpoints/ckpt_000000200.msgpack"):
        (stopped / name).unlink()
    run_main(train_offline, *args, f"--workdir={stopped}")
    assert (stopped / "agent.msgpack").read_bytes() == (tmp_path / "straight" / "agent.msgpack").read_bytes()
    assert read_csv(stopped / "eval.csv") == read_csv(tmp_path / "straight" / "eval.csv")
    # Resuming under another grid is refused.
    with pytest.raises(cli.UserError, match="different --sweep"):
        run_main(train_offline, *[a for a in args if "expectile" not in a], "--sweep=expectile=0.6,0.9",
                 f"--workdir={stopped}")


def test_fine_tuning_sweeps_both_phases(toy, tmp_path):
    run_main(train_finetune, *toy_args(toy, tmp_path / "run", "--sweep=beta=1,10", "--config.online_steps=100",
                                  "--config.eval_interval=100", "--config.log_interval=50"))
    evals = read_csv(tmp_path / "run" / "eval.csv")
    assert [(r["phase"], r["beta"]) for r in evals[-2:]] == [("online", "1.0"), ("online", "10.0")]
    saved = load(tmp_path / "run" / "agent.msgpack")
    assert np.asarray(saved["beta"]).tolist() == [1.0, 10.0]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["online_episodes_per_seed"] == [3, 3] and len(summary["points"]) == 2


def test_members_are_point_major():
    members = sweep.members(3, 2, [("beta", [1.0, 3.0]), ("expectile", [0.7])])
    assert members.seeds == [3, 4, 3, 4]
    assert [members.label(j) for j in range(4)] == ["beta=1 expectile=0.7"] * 2 + ["beta=3 expectile=0.7"] * 2
    assert members.grid() == [{"beta": 1.0, "expectile": 0.7}, {"beta": 3.0, "expectile": 0.7}]


def test_a_grid_asks_for_one_cpu_device_per_core_like_seeds(monkeypatch):
    """On a CPU the host device count is set before JAX starts; a sweep's points count as
    members, so a 2-point grid of one seed gets the two cores' devices as two seeds do."""
    assert sweep.num_points(["beta=1,3,10", "expectile=0.7,0.9"]) == 6 and sweep.num_points([]) == 1
    monkeypatch.setattr(devices.os, "sched_getaffinity", lambda _: {0, 1}, raising=False)
    for num_seeds, specs, expected in ((1, [], None), (2, [], "2"), (1, ["beta=1,10"], "2"), (1, ["beta=1,3,10"], "1")):
        monkeypatch.setenv("XLA_FLAGS", "")
        devices.start_jax(num_seeds, False, sweep.num_points(specs))
        found = re.findall(r"--xla_force_host_platform_device_count=(\d+)", os.environ["XLA_FLAGS"])
        assert found == ([expected] if expected else []), (num_seeds, specs, found)
