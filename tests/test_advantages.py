"""tools/advantages.py: the split of IQL's advantages into a state part and an action part."""

import jax
import numpy as np
import pytest
from conftest import ROOT, bandit_arrays, run_main

import dataset as dataset_lib
import train_offline
from harness.cli import UserError
from learner import IQLLearner
from tools import advantages


def test_weight_figures_on_known_splits():
    rng = np.random.default_rng(0)
    state, action = rng.standard_normal(100_000), rng.standard_normal(100_000)
    # A made of a state part and an equal, independent action part: half the variance is the state's.
    half = advantages.weight_figures(state + action, state, beta=1.0)
    assert half["state_share_of_variance"] == pytest.approx(0.5, abs=0.02)
    assert half["within_state_std"] == pytest.approx(1.0, abs=0.02)
    pure = advantages.weight_figures(state, state, beta=1.0)
    assert pure["state_share_of_variance"] == pytest.approx(1.0)
    assert pure["weight_share_top_decile_a"] == pure["weight_share_top_decile_b"]
    # Equal advantages: equal weights, every row counts, none capped.
    flat = advantages.weight_figures(np.zeros(1000), state[:1000], beta=10.0)
    assert flat["effective_sample_fraction"] == pytest.approx(1.0)
    assert flat["capped_fraction"] == 0.0 and flat["weight_share_top_decile_a"] == pytest.approx(1.0)
    # beta 10 on advantages of std 0.2 (the umaze runs' scale): the top tenth holds most weight.
    sharp = advantages.weight_figures(0.2 * state, state, beta=10.0)
    assert sharp["effective_sample_fraction"] < 0.2 and sharp["weight_share_top_decile_a"] > 0.6


def test_one_state_bandit_advantages_are_the_actions():
    """All rows share one state, so the state part is a constant and A ranks the two actions."""
    data, _ = dataset_lib.from_arrays(**bandit_arrays(n=2000, good_fraction=0.3))
    agent = IQLLearner.create(jax.random.key(0), data.observations[0], data.actions[0], hidden_dims=(32, 32),
                              expectile=0.9, beta=3.0)
    agent, _ = agent.update_n(data, num_steps=1500, batch_size=256)
    a, b = advantages.split_advantages(agent, np.asarray(data.observations), np.asarray(data.actions))
    assert np.ptp(b) < 1e-5  # one state: one B
    good = np.asarray(data.rewards) > 0
    assert a[good].mean() > a[~good].mean() + 0.5, (a[good].mean(), a[~good].mean())
    fig = advantages.weight_figures(a, b, beta=3.0)
    assert fig["state_share_of_variance"] == 0.0  # B is constant: it explains nothing


def test_reads_a_finished_run(minari_root, tmp_path, capsys):
    workdir = tmp_path / "iql"
    run_main(train_offline, f"--config={ROOT}/configs/iql_mujoco.py:smoke", "--dataset=test/hopper/random-v0",
             f"--workdir={workdir}", "--config.eval_episodes=0", "--config.tensorboard=False")
    capsys.readouterr()
    run_main(advantages, f"--workdir={workdir}", "--rows=300")
    out = capsys.readouterr().out
    assert "300 of 600 rows, beta 3" in out and "the state explains at least" in out
    # B is the critic at the policy mean: check one row by hand.
    agent, config, data = advantages.load_agent(str(workdir), 0)
    obs, act = np.asarray(data.observations[:5]), np.asarray(data.actions[:5])
    a, b = advantages.split_advantages(agent, obs, act)
    v = agent.value.apply_fn({"params": agent.value.params}, obs)
    mu, _ = agent.actor.apply_fn({"params": agent.actor.params}, obs)
    q = agent.critic.apply_fn({"params": agent.target_critic_params}, obs, mu).min(axis=0)
    np.testing.assert_allclose(b, np.asarray(q - v), rtol=1e-5, atol=1e-5)
    with pytest.raises(UserError, match="has 1 seed"):
        run_main(advantages, f"--workdir={workdir}", "--seed_index=1")
    with pytest.raises(UserError, match="does not exist"):
        run_main(advantages, f"--workdir={tmp_path / 'nothing'}")


def test_reads_the_rows_the_run_trained_on(tmp_path):
    """A file recorded in a [-3, 3] env trains on actions mapped onto [-1, 1]; the split reads the same rows."""
    import toy_env

    path = tmp_path / "wide.npz"
    toy_env.left_only_dataset(path, episodes=10)
    with np.load(path) as f:
        arrays = dict(f)
    arrays["actions"] = arrays["actions"] * 3.0
    np.savez(path, **arrays)
    workdir = tmp_path / "run"
    run_main(train_offline, f"--config={ROOT}/configs/iql_mujoco.py:smoke", f"--dataset={path}",
             f"--env_name={toy_env.register_wide()}", f"--workdir={workdir}", "--config.eval_episodes=0",
             "--config.tensorboard=False", "--config.reward_transform=none")
    _, _, data = advantages.load_agent(str(workdir), 0)
    trained, _ = dataset_lib.load_dataset(str(path), "none", file_action_bounds=([-3.0], [3.0]))
    assert data.size == trained.size == 10 * (toy_env.STEPS - 1)  # the timeout rows dropped, as in training
    np.testing.assert_array_equal(np.asarray(data.actions), np.asarray(trained.actions))
    assert np.abs(np.asarray(data.actions)).max() <= 1.0 and np.asarray(data.actions).min() < -0.5
