"""IQLLearner: the fused step, its order, update_n, tracing, and learning on a bandit."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import bandit_arrays

import dataset as dataset_lib
import learner
from learner import IQLLearner


def copy(tree):
    """update_n donates its agent; tests keep the original alive with a copy."""
    return jax.tree.map(jnp.copy, tree)


@pytest.fixture
def setup(tiny_config):
    rng = np.random.default_rng(1)
    n = 64
    data, _ = dataset_lib.from_arrays(
        observations=rng.standard_normal((n, 3)),
        actions=rng.uniform(-1, 1, (n, 2)),
        rewards=rng.standard_normal(n),
        terminals=(rng.random(n) < 0.1),
        next_observations=rng.standard_normal((n, 3)),
    )
    agent = IQLLearner.create(jax.random.key(0), data.observations[0], data.actions[0], IQLLearner.fields(tiny_config))
    batch = data.sample(jax.random.key(1), 16)
    return agent, data, batch


def leaves_close(a, b, **kw):
    return all(np.allclose(x, y, **kw) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_update_changes_every_state_and_moves_target_by_tau(setup):
    agent, _, batch = setup
    new, info = agent.update(batch)
    for name in ("actor", "critic", "value"):
        old_state, new_state = getattr(agent, name), getattr(new, name)
        assert int(new_state.step) == int(old_state.step) + 1
        assert not leaves_close(old_state.params, new_state.params), name
    tau = float(agent.target_tau)
    expected = jax.tree.map(lambda t, c: (1 - tau) * t + tau * c, agent.target_critic_params, new.critic.params)
    assert leaves_close(expected, new.target_critic_params, rtol=0, atol=1e-7)
    assert not leaves_close(agent.target_critic_params, new.target_critic_params, rtol=0, atol=1e-9)
    assert not np.array_equal(jax.random.key_data(agent.rng), jax.random.key_data(new.rng))
    assert all(np.ndim(v) == 0 and np.isfinite(v) for v in info.values())


@functools.partial(jax.jit, static_argnums=2)
def reference_step(agent, batch, value_for_actor: str):
    """The IQL step written out with the pure losses; `value_for_actor` picks which value
    net (the 'new' one, as the original, or the 'old' one) the actor's advantage uses."""
    rng, dropout_key = jax.random.split(agent.rng)
    target_q = agent.critic.apply_fn({"params": agent.target_critic_params}, batch.observations, batch.actions).min(0)
    g, _ = jax.grad(learner.value_loss, has_aux=True)(agent.value.params, agent.value, batch.observations,
                                                      target_q, lambda u: learner.expectile_loss(u, agent.expectile))
    value = agent.value.apply_gradients(grads=g)
    v_state = value if value_for_actor == "new" else agent.value
    adv = target_q - v_state.apply_fn({"params": v_state.params}, batch.observations)
    g, _ = jax.grad(learner.awr_actor_loss, has_aux=True)(agent.actor.params, agent.actor, batch, adv, agent.beta,
                                                          dropout_key)
    actor = agent.actor.apply_gradients(grads=g)
    next_v = value.apply_fn({"params": value.params}, batch.next_observations)
    g, _ = jax.grad(learner.critic_loss, has_aux=True)(agent.critic.params, agent.critic, batch, next_v,
                                                       agent.discount)
    critic = agent.critic.apply_gradients(grads=g)
    target = optax.incremental_update(critic.params, agent.target_critic_params, agent.target_tau)
    return value, actor, critic, target


def test_update_order_is_value_actor_critic_target(setup):
    agent, _, batch = setup
    new, _ = agent.update(batch)
    value, actor, critic, target = reference_step(agent, batch, "new")
    assert leaves_close(value.params, new.value.params, atol=1e-6)
    assert leaves_close(actor.params, new.actor.params, atol=1e-6)
    assert leaves_close(critic.params, new.critic.params, atol=1e-6)
    assert leaves_close(target, new.target_critic_params, atol=1e-6)
    # The check is sensitive: an actor using the old value would differ.
    _, actor_old_v, _, _ = reference_step(agent, batch, "old")
    assert not leaves_close(actor_old_v.params, new.actor.params, rtol=0, atol=1e-7)


def test_update_n_equals_k_updates(setup):
    agent, data, _ = setup
    k, batch_size = 5, 16
    scanned, scanned_info = copy(agent).update_n(data, k, batch_size)
    looped, infos = agent, []
    for _ in range(k):
        rng, key = jax.random.split(looped.rng)
        looped, info = looped.replace(rng=rng).update(data.sample(key, batch_size))
        infos.append(info)
    assert leaves_close(scanned.actor.params, looped.actor.params, atol=1e-5)
    assert leaves_close(scanned.critic.params, looped.critic.params, atol=1e-5)
    assert leaves_close(scanned.value.params, looped.value.params, atol=1e-5)
    assert leaves_close(scanned.target_critic_params, looped.target_critic_params, atol=1e-5)
    np.testing.assert_array_equal(jax.random.key_data(scanned.rng), jax.random.key_data(looped.rng))
    for name in ("critic_loss", "value_loss", "actor_loss"):
        np.testing.assert_allclose(float(scanned_info[name]), np.mean([float(i[name]) for i in infos]), rtol=1e-4)


def test_update_n_does_not_retrace(setup, monkeypatch):
    agent, data, _ = setup
    traces = []
    original = IQLLearner._update
    monkeypatch.setattr(IQLLearner, "_update", lambda self, batch: (traces.append(1), original(self, batch))[1])
    batch_size = 13  # a shape no other test compiles, so the first call must trace
    agent, _ = agent.update_n(data, 3, batch_size)
    assert len(traces) == 1
    agent, _ = agent.update_n(data, 3, batch_size)
    # A different dataset of the same shape is an argument, not a constant: still no retrace.
    other = jax.tree.map(lambda x: x + 1.0, data)
    agent, _ = agent.update_n(other, 3, batch_size)
    assert len(traces) == 1


def test_seeds_give_different_agents(tiny_config):
    obs, act = jnp.zeros(3), jnp.zeros(2)
    a = IQLLearner.create(jax.random.key(0), obs, act, IQLLearner.fields(tiny_config))
    b = IQLLearner.create(jax.random.key(1), obs, act, IQLLearner.fields(tiny_config))
    c = IQLLearner.create(jax.random.key(0), obs, act, IQLLearner.fields(tiny_config))
    assert not leaves_close(a.actor.params, b.actor.params)
    assert leaves_close(a.actor.params, c.actor.params, rtol=0, atol=0)


def test_sample_actions_temperature(setup):
    agent, data, _ = setup
    obs = data.observations[:8]
    mean = agent.sample_actions(obs, jax.random.key(0), 0.0)
    means, _ = agent.actor.apply_fn({"params": agent.actor.params}, obs)
    np.testing.assert_allclose(mean, means, atol=1e-6)
    noisy = agent.sample_actions(obs, jax.random.key(0), 1.0)
    assert noisy.shape == (8, 2) and not np.allclose(noisy, mean)
    assert float(jnp.abs(noisy).max()) <= 1.0


@pytest.mark.parametrize("field,value", [("expectile", 1.0), ("expectile", 0.0), ("beta", -1.0),
                                         ("discount", 1.5), ("actor_lr", 0.0), ("hidden_dims", (0, 4))])
def test_bad_hyperparameters_are_named(tiny_config, field, value):
    tiny_config[field] = value
    with pytest.raises(ValueError, match=f"config.{field}"):
        IQLLearner.create(jax.random.key(0), jnp.zeros(3), jnp.zeros(2), IQLLearner.fields(tiny_config))


def test_unknown_hyperparameter_is_an_error_naming_the_nearest():
    with pytest.raises(TypeError, match="unknown hyperparameter 'expetile'; did you mean 'expectile'"):
        IQLLearner.create(jax.random.key(0), jnp.zeros(3), jnp.zeros(2), {"expetile": 0.9})
    with pytest.raises(TypeError, match="'betta'; did you mean 'beta'"):
        IQLLearner.create(jax.random.key(0), jnp.zeros(3), jnp.zeros(2), betta=1.0)
    # `fields` takes the agent's fields out of a run's whole config.
    config = {"expectile": 0.8, "eval_interval": 5000, "beta": 1.0}
    assert IQLLearner.fields(config) == {"expectile": 0.8, "beta": 1.0}


def train_bandit(config, expectile, beta, steps=3000):
    data, _ = dataset_lib.from_arrays(**bandit_arrays())
    config.expectile, config.beta = expectile, beta
    config.actor_lr = config.critic_lr = config.value_lr = 1e-3
    config.cosine_decay = False
    agent = IQLLearner.create(jax.random.key(0), data.observations[0], data.actions[0], IQLLearner.fields(config))
    agent, _ = agent.update_n(data, steps, 64)
    obs = data.observations[:1]
    mean = float(agent.sample_actions(obs, jax.random.key(0), 0.0)[0, 0])
    v = float(agent.value.apply_fn({"params": agent.value.params}, obs)[0])
    return agent, data, mean, v


def test_iql_learns_the_rare_better_action_and_beta_zero_is_behavior_cloning(tiny_config):
    # Behavior: action -0.5 (reward 0) 90% of the time, +0.5 (reward 1) 10%.
    _, data, iql_mean, iql_v = train_bandit(tiny_config.copy_and_resolve_references(), 0.9, 10.0)
    # V fits the 0.9-expectile of Q over dataset actions: for Q in {0 (90%), 1 (10%)} that is
    # 0.5 (tau * 0.1 * (1 - v) = (1 - tau) * 0.9 * v).
    assert abs(iql_v - 0.5) < 0.1, iql_v
    # The policy moves onto the rare better action.
    assert iql_mean > 0.4, iql_mean

    _, _, bc_mean, _ = train_bandit(tiny_config.copy_and_resolve_references(), 0.9, 0.0)
    behavior_mean = float(data.actions.mean())  # about -0.4
    assert abs(bc_mean - behavior_mean) < 0.1, (bc_mean, behavior_mean)


def test_a_batch_of_the_wrong_shape_is_refused_at_trace_time(setup):
    agent, data = setup[0], setup[1]
    batch = data.sample(jax.random.key(0), 16)
    agent.update(batch)  # the right shapes train
    for field, bad in (("rewards", batch.rewards[:, None]), ("masks", batch.masks[:8]),
                       ("actions", batch.actions[:8])):
        with pytest.raises(ValueError, match=f"batch.{field} has shape"):  # (16, 1) rewards: a (16, 16) TD target
            agent.update(batch.replace(**{field: bad}))
