"""Soft Actor-Critic (Haarnoja et al. 2018): the behavior agent that makes offline datasets.

D4RL built its locomotion datasets from SAC policies; `behavior/datasets.py` does the same with this
agent. It mirrors `learner.py`: pure losses on top, then a `flax.struct.PyTreeNode` agent with
a fused jitted `update`, a `lax.scan`ned `update_n` and `sample_actions`.

    critic      L_Q  = E[ sum_i (Q_i(s, a) - y)^2 ],
                y = r + discount * mask * (min_i Q_target_i(s', a') - alpha * log pi(a'|s')),  a' ~ pi(s')
    actor       L_pi = E[ alpha * log pi(a|s) - min_i Q_i(s, a) ],  a ~ pi(s) (reparameterised)
    temperature L_alpha = E[ alpha * (-log pi(a|s) - target_entropy) ],  target_entropy = -action_dim

The policy is a tanh-squashed Gaussian with a state-dependent std, so log-probs carry the
tanh log-det term (unlike the IQL actor). Actions are in [-1, 1]; envs with other bounds are
wrapped in `gymnasium.wrappers.RescaleAction`.
"""

import functools
from typing import Any, Mapping, Sequence

import flax.linen as nn
import flax.struct as struct
import jax
import jax.numpy as jnp
import optax
from flax.training.train_state import TrainState

from learner import scan_updates
from networks import MLP, CriticEnsemble, default_init, gaussian_log_prob

LOG_STD_MIN, LOG_STD_MAX = -10.0, 2.0


class TanhGaussianActor(nn.Module):
    """pi(a|s) = tanh(N(mean(s), std(s)^2)): returns (means, log_stds), both (..., action_dim)."""

    hidden_dims: Sequence[int]
    action_dim: int

    @nn.compact
    def __call__(self, observations: jax.Array):
        x = MLP(self.hidden_dims, activate_final=True)(observations)
        means = nn.Dense(self.action_dim, kernel_init=default_init())(x)
        log_stds = nn.Dense(self.action_dim, kernel_init=default_init())(x)
        return means, jnp.clip(log_stds, LOG_STD_MIN, LOG_STD_MAX)


def sample_tanh_gaussian(key: jax.Array, means: jax.Array, log_stds: jax.Array):
    """A reparameterised sample a = tanh(u), u ~ N(means, exp(log_stds)^2), and log pi(a|s)."""
    u = means + jnp.exp(log_stds) * jax.random.normal(key, means.shape, means.dtype)
    # log|d tanh(u)/du| = log(1 - tanh(u)^2) = 2 * (log 2 - u - softplus(-2u)), stable for large |u|.
    log_det = jnp.sum(2.0 * (jnp.log(2.0) - u - jax.nn.softplus(-2.0 * u)), axis=-1)
    return jnp.tanh(u), gaussian_log_prob(means, log_stds, u) - log_det


class Temperature(nn.Module):
    """alpha = exp(log_alpha), one learned scalar."""

    initial: float = 1.0

    @nn.compact
    def __call__(self) -> jax.Array:
        log_alpha = self.param("log_alpha", lambda _: jnp.log(jnp.float32(self.initial)))
        return jnp.exp(log_alpha)


def sac_critic_loss(params, critic: TrainState, batch, target_q: jax.Array, discount):
    """L_Q: every head regresses onto the soft Bellman target (computed outside, no gradient)."""
    target = batch.rewards + discount * batch.masks * target_q
    qs = critic.apply_fn({"params": params}, batch.observations, batch.actions)
    loss = ((qs - jax.lax.stop_gradient(target)) ** 2).mean(axis=-1).sum()
    return loss, {"critic_loss": loss, "q_mean": qs.mean()}


def sac_actor_loss(params, actor: TrainState, critic: TrainState, observations, alpha, key):
    """L_pi: maximise the soft value min_i Q_i(s, a) - alpha * log pi(a|s)."""
    means, log_stds = actor.apply_fn({"params": params}, observations)
    actions, log_probs = sample_tanh_gaussian(key, means, log_stds)
    q = critic.apply_fn({"params": critic.params}, observations, actions).min(axis=0)
    loss = (alpha * log_probs - q).mean()
    return loss, {"actor_loss": loss, "entropy": -log_probs.mean()}


def temperature_loss(params, temperature: TrainState, entropy, target_entropy):
    """L_alpha: raise alpha when the policy's entropy is below target, lower it when above."""
    alpha = temperature.apply_fn({"params": params})
    loss = alpha * (jax.lax.stop_gradient(entropy) - target_entropy)
    return loss, {"alpha": alpha, "temperature_loss": loss}


class SACLearner(struct.PyTreeNode):
    """A SAC agent: actor, twin critic, target critic and temperature, as one pytree.

    Float hyperparameters are traced leaves; network shapes live in the static modules.
    """

    rng: jax.Array
    actor: TrainState
    critic: TrainState
    temperature: TrainState
    target_critic_params: Any
    discount: jax.Array
    target_tau: jax.Array
    target_entropy: jax.Array

    @classmethod
    def create(cls, key: jax.Array, observations: jax.Array, actions: jax.Array, config: Mapping) -> "SACLearner":
        """config: `hidden_dims`, `actor_lr`, `critic_lr`, `temperature_lr`, `init_temperature`,
        `discount`, `target_tau`; the example observation/action give only the shapes."""
        observations = jnp.atleast_2d(jnp.asarray(observations, jnp.float32))
        actions = jnp.atleast_2d(jnp.asarray(actions, jnp.float32))
        hidden_dims = tuple(int(d) for d in config["hidden_dims"])
        rng, actor_key, critic_key = jax.random.split(key, 3)
        actor_def = TanhGaussianActor(hidden_dims, actions.shape[-1])
        actor = TrainState.create(apply_fn=actor_def.apply, params=actor_def.init(actor_key, observations)["params"],
                                  tx=optax.adam(config["actor_lr"]))
        critic_def = CriticEnsemble(hidden_dims, num_qs=2)
        critic_params = critic_def.init(critic_key, observations, actions)["params"]
        critic = TrainState.create(apply_fn=critic_def.apply, params=critic_params, tx=optax.adam(config["critic_lr"]))
        temp_def = Temperature(float(config["init_temperature"]))
        temperature = TrainState.create(apply_fn=temp_def.apply, params=temp_def.init(jax.random.key(0))["params"],
                                        tx=optax.adam(config["temperature_lr"]))
        return cls(
            rng=rng, actor=actor, critic=critic, temperature=temperature,
            target_critic_params=jax.tree.map(jnp.copy, critic_params),
            discount=jnp.float32(config["discount"]), target_tau=jnp.float32(config["target_tau"]),
            target_entropy=jnp.float32(-actions.shape[-1]),
        )

    def _update(self, batch) -> tuple["SACLearner", dict]:
        rng, next_key, actor_key = jax.random.split(self.rng, 3)
        alpha = self.temperature.apply_fn({"params": self.temperature.params})

        # Critic: soft target from the current policy at s' and the target critic.
        means, log_stds = self.actor.apply_fn({"params": self.actor.params}, batch.next_observations)
        next_actions, next_log_probs = sample_tanh_gaussian(next_key, means, log_stds)
        next_q = self.critic.apply_fn({"params": self.target_critic_params}, batch.next_observations,
                                      next_actions).min(axis=0)
        target_q = next_q - alpha * next_log_probs
        grads, critic_info = jax.grad(sac_critic_loss, has_aux=True)(
            self.critic.params, self.critic, batch, target_q, self.discount)
        critic = self.critic.apply_gradients(grads=grads)

        # Actor against the new critic.
        grads, actor_info = jax.grad(sac_actor_loss, has_aux=True)(
            self.actor.params, self.actor, critic, batch.observations, alpha, actor_key)
        actor = self.actor.apply_gradients(grads=grads)

        # Temperature from the actor's entropy on this batch.
        grads, temp_info = jax.grad(temperature_loss, has_aux=True)(
            self.temperature.params, self.temperature, actor_info["entropy"], self.target_entropy)
        temperature = self.temperature.apply_gradients(grads=grads)

        target = optax.incremental_update(critic.params, self.target_critic_params, self.target_tau)
        new = self.replace(rng=rng, actor=actor, critic=critic, temperature=temperature, target_critic_params=target)
        return new, {**critic_info, **actor_info, **temp_info}

    @jax.jit
    def update(self, batch) -> tuple["SACLearner", dict]:
        """One fused step: critic -> actor -> temperature -> Polyak target."""
        return self._update(batch)

    @functools.partial(jax.jit, static_argnames=("num_steps", "batch_size"), donate_argnums=0)
    def update_n(self, data, num_steps: int, batch_size: int) -> tuple["SACLearner", dict]:
        """`num_steps` updates under `lax.scan` on batches sampled on the device from `data`
        (a `replay_buffer.ReplayBuffer` or `dataset.Dataset`); metrics averaged over the steps."""
        return scan_updates(self, data, num_steps, batch_size)

    @jax.jit
    def sample_actions(self, observations: jax.Array, key: jax.Array, deterministic: bool = False) -> jax.Array:
        """Actions in [-1, 1]: tanh of the mean when `deterministic`, else a policy sample."""
        return policy_actions(self.actor.apply_fn, self.actor.params, observations, key, deterministic)


def policy_actions(apply_fn, params, observations, key, deterministic):
    """Act with actor params alone (what the shipped policy files hold)."""
    means, log_stds = apply_fn({"params": params}, observations)
    sampled, _ = sample_tanh_gaussian(key, means, log_stds)
    return jnp.where(deterministic, jnp.tanh(means), sampled)
