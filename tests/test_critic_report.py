"""tools/critic_report.py: returns and the per-row reading of a run's critic."""

import json

import jax
import numpy as np
import pytest
from conftest import run_main

from harness import cli
from tools import critic_report, evaluate


def test_discounted_returns_restart_at_episode_ends_and_stop_at_terminals():
    rewards = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    masks = np.array([1, 0, 1, 1, 1, 1])  # row 1 is terminal (a goal row, say)
    dones = np.array([0, 0, 0, 1, 0, 1])  # two episodes: rows 0-3 and 4-5, each cut by a timeout
    g, tail = critic_report.discounted_returns(rewards, masks, dones, 0.5)
    np.testing.assert_allclose(g, [1 + 0.5 * 2, 2, 3 + 0.5 * 4, 4, 5 + 0.5 * 6, 6])
    np.testing.assert_array_equal(tail, [np.inf, np.inf, 2, 1, 2, 1])
    # max|r| / (1 - 0.5) = 12: 0.5^tail * 12 <= 3 needs tail >= 2.
    np.testing.assert_array_equal(critic_report.known_returns(tail, rewards, 0.5, 3.0),
                                  [True, True, True, False, True, False])


def test_report_weights_by_hand():
    v = np.array([0.0, 0.0, 0.0, 0.0])
    q = np.array([-1.0, 0.0, 0.3, 1.0])  # A = q; beta 10: weights e^-10, 1, e^3, 100 (capped)
    out = critic_report.report(v, q, 10.0, returns=np.array([0.0, -1.0, 0.0, 0.0]),
                               known=np.array([True, True, False, False]))
    w = np.array([np.exp(-10), 1.0, np.exp(3), 100.0])
    assert out["weight_at_cap"] == 0.25 and out["adv_positive"] == 0.5
    assert out["weight_ess"] == pytest.approx(w.sum() ** 2 / (4 * (w**2).sum()))
    assert out["v_minus_return_median"] == pytest.approx(0.5) and out["v_above_return"] == 0.5
    assert out["weight_mean"] == pytest.approx(w.mean()) and out["adv_mean"] == pytest.approx(0.075)


def test_the_report_reads_the_runs_own_networks(finished_sweep, tmp_path):
    workdir = finished_sweep  # seeds 5 and 6 x beta 0 and 3
    out = tmp_path / "report.json"
    run_main(critic_report, f"--workdir={workdir}", "--step=100", f"--out={out}")
    result = json.loads(out.read_text())
    assert result["step"] == 100 and [(m["seed"], m["beta"]) for m in result["members"]] == [
        (5, 0.0), (6, 0.0), (5, 3.0), (6, 3.0)]
    # The same figures straight from the checkpoint's networks.
    run = evaluate.load_run(str(workdir), 100)
    for i, member in enumerate(result["members"]):
        agent = jax.tree.map(lambda x, i=i: x[i], run.agents)
        v = agent.value.apply_fn({"params": agent.value.params}, run.source.data.observations)
        q = agent.critic.apply_fn({"params": agent.target_critic_params}, run.source.data.observations,
                                  run.source.data.actions).min(axis=0)
        assert member["rows"] == run.source.data.size
        assert member["v_median"] == pytest.approx(float(np.median(v)), rel=1e-5)
        assert member["adv_std"] == pytest.approx(float(np.std(np.asarray(q) - np.asarray(v))), rel=1e-4)
        assert 0 < member["weight_ess"] <= 1
    assert result["members"][0]["v_median"] != result["members"][1]["v_median"]
    with pytest.raises(cli.UserError, match="--return_tolerance must be > 0"):
        run_main(critic_report, f"--workdir={workdir}", "--return_tolerance=0")
