"""The pure loss functions against hand-computed values."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import learner


def numpy_expectile(x: np.ndarray, tau: float) -> float:
    """The tau-expectile of samples: the v with tau * E[(x - v)+] = (1 - tau) * E[(v - x)+]."""
    lo, hi = float(x.min()), float(x.max())
    for _ in range(100):
        v = 0.5 * (lo + hi)
        balance = tau * np.clip(x - v, 0, None).sum() - (1 - tau) * np.clip(v - x, 0, None).sum()
        lo, hi = (v, hi) if balance > 0 else (lo, v)
    return 0.5 * (lo + hi)


def test_expectile_loss_hand_values():
    diff = jnp.array([2.0, -2.0, 0.5, -0.5, 0.0])
    got = learner.expectile_loss(diff, 0.7)
    # u >= 0 weighs tau = 0.7, u < 0 weighs 1 - tau = 0.3.
    np.testing.assert_allclose(got, [0.7 * 4, 0.3 * 4, 0.7 * 0.25, 0.3 * 0.25, 0.0], rtol=1e-6)
    # tau = 0.5 is half the squared error.
    np.testing.assert_allclose(learner.expectile_loss(diff, 0.5), 0.5 * diff**2, rtol=1e-6)


@pytest.mark.parametrize("tau", [0.5, 0.7, 0.9])
def test_fitted_scalar_is_the_expectile(tau):
    x = jnp.asarray(np.random.default_rng(0).exponential(size=2000), jnp.float32)
    loss = lambda v: learner.expectile_loss(x - v, tau).mean()  # noqa: E731
    opt = optax.adam(0.05)

    @jax.jit
    def fit(v):
        def step(carry, _):
            v, state = carry
            updates, state = opt.update(jax.grad(loss)(v), state)
            return (optax.apply_updates(v, updates), state), None

        return jax.lax.scan(step, (v, opt.init(v)), length=3000)[0][0]

    v = float(fit(jnp.float32(0.0)))
    expected = numpy_expectile(np.asarray(x), tau)
    assert abs(v - expected) < 5e-3, (v, expected)
    if tau == 0.5:
        assert abs(v - float(x.mean())) < 5e-3


def _states():
    from flax.training.train_state import TrainState

    from networks import GaussianPolicy, ValueCritic

    obs = jnp.ones((4, 3))
    value_def, actor_def = ValueCritic((8,)), GaussianPolicy((8,), 2)
    value = TrainState.create(apply_fn=value_def.apply, params=value_def.init(jax.random.key(0), obs)["params"],
                              tx=optax.adam(1e-3))
    actor = TrainState.create(apply_fn=actor_def.apply, params=actor_def.init(jax.random.key(1), obs)["params"],
                              tx=optax.adam(1e-3))
    return obs, value, actor


def expectile_07(u):
    return learner.expectile_loss(u, 0.7)


def test_no_gradient_of_the_value_loss_reaches_q():
    obs, value, _ = _states()
    target_q = jnp.array([1.0, -2.0, 3.0, 0.5])
    grad_q = jax.grad(lambda q: learner.value_loss(value.params, value, obs, q, expectile_07)[0])(target_q)
    np.testing.assert_array_equal(grad_q, 0.0)
    grad_v = jax.grad(lambda p: learner.value_loss(p, value, obs, target_q, expectile_07)[0])(value.params)
    assert any(float(jnp.abs(g).sum()) > 0 for g in jax.tree.leaves(grad_v))


def test_awr_weight_is_capped_at_100():
    obs, _, actor = _states()

    class Batch:
        observations = obs
        actions = jnp.zeros((4, 2))

    advantages = jnp.array([10.0, 1.0, 0.0, -1.0])
    beta = 3.0
    _, info = learner.awr_actor_loss(actor.params, actor, Batch, advantages, beta, jax.random.key(0))
    weights = np.minimum(np.exp(beta * np.asarray(advantages)), 100.0)
    assert float(info["awr_weight_max"]) == 100.0
    np.testing.assert_allclose(float(info["awr_weight_mean"]), weights.mean(), rtol=1e-5)
    # weights 100, e^3, 1, e^-3: Kish's effective share is (sum w)^2 / (4 sum w^2) ~ 0.35.
    np.testing.assert_allclose(float(info["awr_weight_ess"]), weights.sum() ** 2 / (4 * (weights**2).sum()), rtol=1e-5)
    assert 0.35 < float(info["awr_weight_ess"]) < 0.36
    # The loss is exactly -mean(w * log pi(a|s)) with those capped weights.
    from networks import gaussian_log_prob

    means, log_stds = actor.apply_fn({"params": actor.params}, obs)
    expected = -(weights * np.asarray(gaussian_log_prob(means, log_stds, Batch.actions))).mean()
    loss, _ = learner.awr_actor_loss(actor.params, actor, Batch, advantages, beta, jax.random.key(0))
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)


def test_gaussian_log_prob_matches_closed_form():
    from networks import gaussian_log_prob

    means, log_stds = jnp.array([[0.0, 1.0]]), jnp.array([0.0, jnp.log(2.0)])
    actions = jnp.array([[1.0, 0.0]])
    # N(1; 0, 1) and N(0; 1, 2^2), summed over dimensions.
    expected = (-0.5 - 0.5 * np.log(2 * np.pi)) + (-0.5 * 0.25 - np.log(2.0) - 0.5 * np.log(2 * np.pi))
    np.testing.assert_allclose(float(gaussian_log_prob(means, log_stds, actions)[0]), expected, rtol=1e-6)


def test_critic_loss_hand_value():
    from flax.training.train_state import TrainState

    class Batch:
        observations = jnp.zeros((2, 1))
        actions = jnp.zeros((2, 1))
        rewards = jnp.array([1.0, 0.0])
        masks = jnp.array([1.0, 0.0])

    # A fake two-head critic that returns fixed Q values.
    qs = jnp.array([[2.0, 0.0], [1.0, 1.0]])
    critic = TrainState.create(apply_fn=lambda v, o, a: qs * v["params"]["s"], params={"s": jnp.float32(1.0)},
                               tx=optax.sgd(0.0))
    next_v = jnp.array([3.0, 5.0])
    loss, _ = learner.critic_loss(critic.params, critic, Batch, next_v, 0.5)
    # targets: 1 + 0.5 * 3 = 2.5 and 0 (terminal: the 5 is masked).
    target = np.array([2.5, 0.0])
    expected = ((np.asarray(qs) - target) ** 2).mean(axis=1).sum()
    np.testing.assert_allclose(float(loss), expected, rtol=1e-6)
