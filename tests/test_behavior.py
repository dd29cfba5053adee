"""The SAC behavior agent: its log-probs, learning on Pendulum, and resuming a run."""


import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import read_csv

import evaluation
from behavior import sac
from harness import outputs


def test_tanh_gaussian_log_prob_is_change_of_variables():
    means, log_stds = jnp.array([[0.3]]), jnp.array([[-0.5]])
    actions, log_probs = sac.sample_tanh_gaussian(jax.random.key(0), means, log_stds)
    a = float(actions[0, 0])
    u, std = np.arctanh(a), np.exp(-0.5)
    expected = -0.5 * ((u - 0.3) / std) ** 2 - np.log(std) - 0.5 * np.log(2 * np.pi) - np.log(1 - a**2)
    np.testing.assert_allclose(float(log_probs[0]), expected, rtol=1e-4)


def random_return(episodes=10):
    counter = iter(range(10**6))
    policy = lambda obs: np.asarray(jax.random.uniform(jax.random.key(next(counter)), (len(obs), 1), minval=-1, maxval=1))  # noqa: E731
    return evaluation.evaluate(policy, lambda: evaluation.make_env("Pendulum-v1"), episodes, seed=123)["return"]


@pytest.mark.slow  # 6000 SAC steps (the shared fixture)
def test_sac_beats_a_random_policy_on_pendulum(pendulum_behavior):
    _, _, snapshots = pendulum_behavior
    baseline = random_return()
    best = max(s["return"] for s in snapshots)
    # Random play scores about -1200; 6000 SAC steps (about a CPU-minute) reach better than -800.
    assert baseline < -900, baseline
    assert best > -800 and best > baseline + 400, (best, baseline)


@pytest.mark.slow  # the same SAC fixture
def test_resume_continues_the_run(pendulum_behavior):
    workdir, first, snapshots = pendulum_behavior
    assert [s["step"] for s in first] == [2000, 4000]
    assert [s["step"] for s in snapshots] == [2000, 4000, 6000]
    assert snapshots[:2] == first  # the resumed run kept the earlier snapshots
    # The same Checkpointer as the training scripts: the newest two kept, the last at 6000.
    checkpointer = outputs.Checkpointer(str(workdir))
    assert checkpointer.steps() == [6000, 4000]
    saved = outputs.load_pytree(checkpointer.path(6000), lambda raw: raw)
    assert int(saved["step"]) == 6000 and int(saved["episodes"]) > 0
    rows = saved["rows"]
    assert rows["observations"].shape == (6000, 3)
    # The episode cut by the stop at 4000 ends there; Pendulum otherwise ends every 200 steps.
    assert rows["dones"][3999] == 1 and rows["dones"].sum() == 6000 // 200 + (1 if 4000 % 200 else 0)
    assert [int(r["step"]) for r in read_csv(workdir / "eval.csv")] == [2000, 4000, 6000]
    assert sorted(p.name for p in (workdir / "snapshots").iterdir()) == [
        "step_0002000.msgpack", "step_0004000.msgpack", "step_0006000.msgpack"]
