"""IDQL: schedules, the sampler, two-mode behavior cloning, critic selection, value losses."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.training.train_state import TrainState

import dataset as dataset_lib
import idql
import networks
from configs import idql_mujoco, iql_mujoco
from harness import multiseed
from harness.evaluator import Evaluator
from idql import IDQLLearner
from learner import IQLLearner


def idql_config(**changes):
    config = idql_mujoco.get_config("smoke")
    config.hidden_dims = (32, 32)
    config.diffusion_hidden_dim, config.diffusion_blocks, config.time_dim = 64, 2, 16
    config.cosine_decay = False
    for k, v in changes.items():
        config[k] = v
    return config


@pytest.mark.parametrize("name", ["vp", "cosine", "linear"])
def test_schedules_decrease_alphas(name):
    betas = networks.BETA_SCHEDULES[name](5)
    alphas = 1.0 - np.asarray(betas)
    assert np.all(np.diff(alphas) < 0) and np.all((alphas > 0) & (alphas <= 1))


def test_vp_cumulative_product_hand_value():
    # sum_t (2t - 1) = T^2, so abar_T = exp(-b_min - (b_max - b_min) / 2) = exp(-5.05).
    alpha_hats = np.cumprod(1.0 - np.asarray(networks.vp_beta_schedule(5)))
    assert alpha_hats[-1] == pytest.approx(np.exp(-5.05), rel=1e-5)
    b1 = 1 - np.exp(-0.1 / 5 - 0.5 * 9.9 / 25)
    assert alpha_hats[0] == pytest.approx(1 - b1, rel=1e-6)


def reference_exp_weight(x):
    """exp(x) up to log 6, then the tangent line there (NumPy, for hand values)."""
    x = np.asarray(x, np.float64)
    return np.where(x < np.log(6), np.exp(np.minimum(x, np.log(6))), 6 * (1 + x - np.log(6)))


def test_value_losses_hand_values():
    u = jnp.array([2.0, -2.0])
    np.testing.assert_allclose(idql.quantile_loss(u, 0.7), [0.7 * 2, 0.3 * 2], rtol=1e-6)
    # (w(k u) - 1) u with k = 0.5: u = 2 -> (e - 1) 2; u = -2 -> (1/e - 1)(-2).
    np.testing.assert_allclose(idql.exponential_loss(u, 0.5), [(np.e - 1) * 2, (np.exp(-1) - 1) * -2], rtol=1e-5)
    # Past k u = log 6 the weight continues linearly: k u = 3 -> 6 (1 + 3 - log 6).
    np.testing.assert_allclose(idql.exponential_weight(jnp.array([0.0, 3.0])), [1.0, 6 * (4 - np.log(6))], rtol=1e-6)
    a = jnp.array([1.0, -1.0, 2.0])
    np.testing.assert_allclose(idql.critic_implied_weights(a, "expectile", 0.9, 1.0), [0.9, 0.1, 0.9], rtol=1e-6)
    np.testing.assert_allclose(idql.critic_implied_weights(a, "quantile", 0.9, 1.0), [0.9, 0.1, 0.45], rtol=1e-6)
    ka = 2.0 * np.asarray(a)
    np.testing.assert_allclose(idql.critic_implied_weights(a, "exponential", 0.9, 2.0),
                               (reference_exp_weight(ka) - 1) / ka, rtol=1e-5)


def test_exponential_objective_keeps_pulling_at_large_advantages():
    """No zero-gradient cliff: dL/dV = -(w(k u) - 1) decreases strictly in u (the old clipped
    form had dL/dV = -19929 at u = 9.9 and exactly 0 at u = 10.1), and the implied resampling
    weights increase with the advantage."""
    u = jnp.linspace(-5.0, 20.0, 251)
    grad_v = jax.vmap(jax.grad(lambda v, q: idql.exponential_loss(q - v, 1.0)), in_axes=(None, 0))(0.0, u)
    assert np.all(np.diff(np.asarray(grad_v)) < 0), grad_v
    np.testing.assert_allclose(grad_v, -(reference_exp_weight(np.asarray(u)) - 1), rtol=1e-5, atol=1e-6)
    assert float(grad_v[-1]) < float(grad_v[150]) < -5.0  # u = 20 pulls harder than u = 10
    weights = idql.critic_implied_weights(u[u > 0.1], "exponential", 0.7, 1.0)
    assert np.all(np.diff(np.asarray(weights)) > 0)


@pytest.mark.parametrize("kind,statistic", [("quantile", lambda x: np.quantile(x, 0.8)),
                                            ("exponential", lambda x: np.log(np.mean(np.exp(0.5 * x))) / 0.5)])
def test_generalised_value_losses_fit_their_statistic(kind, statistic):
    x = jnp.asarray(np.random.default_rng(0).normal(size=4000), jnp.float32)
    # (k = 0.5: exp(k x) stays below 6, where the minimiser is the log-mean-exp.)
    loss = (lambda v: idql.quantile_loss(x - v, 0.8).mean()) if kind == "quantile" else \
        (lambda v: idql.exponential_loss(x - v, 0.5).mean())
    v = jnp.float32(0.0)
    step = jax.jit(lambda v: v - 0.05 * jax.grad(loss)(v))
    for _ in range(3000):
        v = step(v)
    assert float(v) == pytest.approx(statistic(np.asarray(x)), abs=0.03)


def bimodal_data(n=2000, seed=0, uniform_fraction=0.0):
    """One state; actions at -0.7 or +0.7 (50/50), optionally some uniform ones; reward 1 near
    either mode, 0 elsewhere; one-step episodes."""
    rng = np.random.default_rng(seed)
    actions = np.where(rng.random(n) < 0.5, -0.7, 0.7) + 0.05 * rng.standard_normal(n)
    uniform = rng.random(n) < uniform_fraction
    actions = np.where(uniform, rng.uniform(-1, 1, n), actions)[:, None]
    rewards = (np.abs(np.abs(actions[:, 0]) - 0.7) < 0.2).astype(np.float32)
    data, _ = dataset_lib.from_arrays(np.ones((n, 2)), actions, rewards, np.ones(n))
    return data


def test_sampler_shape_and_range():
    data = bimodal_data(200)
    agent = IDQLLearner.create(jax.random.key(0), data.observations[0], data.actions[0], IDQLLearner.fields(idql_config(num_samples=16)))
    candidates = agent.sample_candidates(data.observations[:3], jax.random.key(1))
    assert candidates.shape == (3, 16, 1)
    assert float(jnp.abs(candidates).max()) <= 1.0
    assert agent.sample_actions(data.observations[0], jax.random.key(2)).shape == (1,)
    assert agent.sample_actions(data.observations[:5], jax.random.key(2)).shape == (5, 1)


def shape(samples):
    """(fraction left, fraction right, density at 0 / density at a mode), bins 0.3 wide."""
    center = (np.abs(samples) < 0.15).mean()
    modes = (np.abs(np.abs(samples) - 0.7) < 0.15).mean() / 2
    return (samples < -0.4).mean(), (samples > 0.4).mean(), center / max(modes, 1e-9)


def test_diffusion_reproduces_two_modes_a_gaussian_cannot():
    data = bimodal_data()
    agent = IDQLLearner.create(jax.random.key(0), data.observations[0], data.actions[0],
                               IDQLLearner.fields(idql_config(num_samples=1000, actor_lr=1e-3, ema_rate=0.01)))
    agent, _ = agent.update_n(data, 3000, 128)
    samples = np.asarray(agent.sample_candidates(data.observations[:1], jax.random.key(3)))[0, :, 0]
    left, right, center_ratio = shape(samples)
    # Both modes, each about half, and a dip between them.
    assert 0.3 < left < 0.7 and 0.3 < right < 0.7 and center_ratio < 0.3, (left, right, center_ratio)

    # The Gaussian actor of IQL, trained the same way (beta = 0: plain behavior cloning), is
    # unimodal: densest at the mean, between the modes.
    config = iql_mujoco.get_config("smoke")
    config.hidden_dims, config.beta, config.actor_lr, config.cosine_decay = (64, 64), 0.0, 1e-3, False
    gaussian = IQLLearner.create(jax.random.key(0), data.observations[0], data.actions[0], IQLLearner.fields(config))
    gaussian, _ = gaussian.update_n(data, 3000, 128)
    obs = jnp.repeat(data.observations[:1], 1000, axis=0)
    _, _, gaussian_ratio = shape(np.asarray(gaussian.sample_actions(obs, jax.random.key(3), 1.0))[:, 0])
    assert gaussian_ratio > 1.0, gaussian_ratio


def test_acting_picks_the_highest_q_candidate():
    data = bimodal_data(200)
    agent = IDQLLearner.create(jax.random.key(0), data.observations[0], data.actions[0], IDQLLearner.fields(idql_config(num_samples=32)))
    # A rigged critic whose every head says Q(s, a) = a.
    rigged = TrainState.create(apply_fn=lambda v, o, a: jnp.stack([a[..., 0], a[..., 0] + 1.0]),
                               params={}, tx=agent.critic.tx)
    agent = agent.replace(critic=rigged, target_critic_params={})
    obs = data.observations[:4]
    candidates = agent.sample_candidates(obs, jax.random.key(5))
    chosen = agent.select(obs, candidates, jax.random.key(6))
    np.testing.assert_allclose(chosen[:, 0], candidates[:, :, 0].max(axis=1))
    assert float(jnp.std(candidates)) > 0.05  # there was a real choice to make


def test_resampling_follows_the_critic_implied_weights():
    data = bimodal_data(200)
    agent = IDQLLearner.create(jax.random.key(0), data.observations[0], data.actions[0],
                               IDQLLearner.fields(idql_config(num_samples=2, selection="resample", expectile=0.9)))
    # V = 0 and Q = +1 / -1 for the two candidates: expectile weights 0.9 / 0.1.
    rigged = TrainState.create(apply_fn=lambda v, o, a: jnp.stack([a[..., 0]] * 2), params={}, tx=agent.critic.tx)
    zero_v = TrainState.create(apply_fn=lambda v, o: jnp.zeros(o.shape[:-1]), params={}, tx=agent.value.tx)
    agent = agent.replace(critic=rigged, target_critic_params={}, value=zero_v)
    obs = jnp.ones((4000, 2))
    candidates = jnp.broadcast_to(jnp.array([[[1.0], [-1.0]]]), (4000, 2, 1))
    chosen = np.asarray(agent.select(obs, candidates, jax.random.key(7)))[:, 0]
    assert (chosen == 1.0).mean() == pytest.approx(0.9, abs=0.02)


def test_idql_at_least_matches_iql_when_good_actions_are_multimodal():
    data = bimodal_data(uniform_fraction=0.2)
    reward = lambda a: float(np.mean(np.abs(np.abs(np.asarray(a)[..., 0]) - 0.7) < 0.2))  # noqa: E731
    obs = data.observations[:64]

    config = iql_mujoco.get_config("smoke")
    config.hidden_dims, config.actor_lr, config.critic_lr, config.value_lr = (64, 64), 1e-3, 1e-3, 1e-3
    config.cosine_decay = False
    iql, _ = IQLLearner.create(jax.random.key(0), data.observations[0], data.actions[0], IQLLearner.fields(config)).update_n(data, 3000, 128)
    iql_score = reward(iql.sample_actions(obs, jax.random.key(1), 0.0))

    agent = IDQLLearner.create(jax.random.key(0), data.observations[0], data.actions[0],
                               IDQLLearner.fields(idql_config(num_samples=32, actor_lr=1e-3, critic_lr=1e-3, value_lr=1e-3, ema_rate=0.01)))
    agent, _ = agent.update_n(data, 3000, 128)
    idql_score = reward(agent.sample_actions(obs, jax.random.key(1), 1.0))
    # The Gaussian's mean lands between the modes, where nothing pays; IDQL picks a mode.
    assert idql_score >= iql_score and idql_score > 0.9, (idql_score, iql_score)


@pytest.mark.parametrize("field,value", [("ema_rate", 1.5), ("diffusion_dropout", 1.0), ("expectile", 0.0),
                                         ("exp_scale", 0.0), ("value_objective", "median"),
                                         ("selection", "best"), ("num_samples", 0)])
def test_bad_idql_hyperparameters_are_named(field, value):
    data = bimodal_data(50)
    with pytest.raises(ValueError, match=f"config.{field}"):
        IDQLLearner.create(jax.random.key(0), data.observations[0], data.actions[0], IDQLLearner.fields(idql_config(**{field: value})))


def test_evaluation_draws_new_candidates_at_every_env_step_and_evaluation():
    """The evaluation policy of a run: IDQL samples anew at every call (env step) and at every
    evaluation step, not one fixed-noise map; seeds act with their own keys."""
    data = bimodal_data(200)
    config = idql_config(num_samples=4, eval_temperature=1.0)
    mesh = multiseed.make_mesh(2, 1)
    create = lambda key: IDQLLearner.create(key, data.observations[0], data.actions[0], IDQLLearner.fields(config))  # noqa: E731
    agents = multiseed.create_agents(create, [0, 1], mesh)
    evaluator = Evaluator(None, [0, 1], 3, None, None, temperature=config.eval_temperature)
    obs = np.ones((2 * 3, 2), np.float32)  # 2 seeds x 3 episodes, all in the same state
    policy = evaluator.policy(agents, 3, step=1000)
    first, second = policy(obs), policy(obs)
    assert first.shape == (6, 1) and not np.allclose(first, second)
    again = evaluator.policy(agents, 3, step=1000)(obs)
    np.testing.assert_array_equal(first, again)  # a pure function of (seed, step, call)
    assert not np.allclose(first, evaluator.policy(agents, 3, step=2000)(obs))


def test_time_feature_table_equals_per_row_time_features():
    """With num_steps the noise model embeds the T steps once and gathers: the same outputs and
    parameter gradients as embedding every row."""
    table_model = networks.DiffusionNoiseModel(2, hidden_dim=16, num_blocks=1, time_dim=8, num_steps=5)
    row_model = networks.DiffusionNoiseModel(2, hidden_dim=16, num_blocks=1, time_dim=8)
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    a, s = jax.random.normal(k1, (32, 2)), jax.random.normal(k2, (32, 3))
    t = jax.random.randint(k3, (32, 1), 0, 5)
    params = table_model.init(jax.random.key(1), a, s, t)
    assert jax.tree.structure(params) == jax.tree.structure(row_model.init(jax.random.key(1), a, s, t))
    np.testing.assert_allclose(table_model.apply(params, a, s, t), row_model.apply(params, a, s, t), atol=1e-5)
    grads = [jax.grad(lambda p, m=m: (m.apply(p, a, s, t) ** 2).sum())(params) for m in (table_model, row_model)]
    chex.assert_trees_all_close(grads[0], grads[1], rtol=1e-4, atol=1e-5)


def test_sample_actions_without_a_temperature_is_each_agents_evaluation_action():
    """IQL evaluates with the policy mean (temperature 0), IDQL with its authors' sampler
    (temperature 1): called without a temperature, each gives its own evaluation action."""
    data = bimodal_data(200)
    obs, key = data.observations[:4], jax.random.key(5)
    iql = IQLLearner.create(jax.random.key(0), data.observations[0], data.actions[0], hidden_dims=(16, 16))
    np.testing.assert_array_equal(iql.sample_actions(obs, key), iql.sample_actions(obs, key, 0.0))
    assert not np.allclose(iql.sample_actions(obs, key), iql.sample_actions(obs, key, 1.0))
    agent = IDQLLearner.create(jax.random.key(0), data.observations[0], data.actions[0],
                               IDQLLearner.fields(idql_config(num_samples=4)))
    np.testing.assert_array_equal(agent.sample_actions(obs, key), agent.sample_actions(obs, key, 1.0))
    assert not np.allclose(agent.sample_actions(obs, key), agent.sample_actions(obs, key, 0.0))
