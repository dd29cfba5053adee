"""Implicit Q-Learning (Kostrikov, Nair, Levine, ICLR 2022): losses and the jit-compiled agent.

The file reads top to bottom: the three pure loss functions of the paper (value, critic,
actor), then `IQLLearner`, which holds the three TrainStates plus the target critic and runs
them in one fused, compiled step.

    u = min_i Q_target_i(s, a) - V(s)
    value  L_V(psi)   = E[ L_2^tau(u) ],  L_2^tau(u) = |tau - 1(u < 0)| u^2   expectile regression
    critic L_Q(theta) = E[ sum_i (Q_i(s, a) - r - discount * mask * V(s'))^2 ]
    actor  L_pi(phi)  = -E[ min(exp(beta * A(s, a)), 100) log pi(a | s) ],  A = Q_target - V

(the paper's names for the three losses, Section 4; the actor is advantage-weighted regression).

`beta` is an inverse temperature (the original code calls it `temperature`): beta = 0 is plain
behavior cloning, larger beta follows the advantage more greedily.

Usage::

    agent = IQLLearner.create(jax.random.key(0), obs[0], act[0])          # the paper's defaults
    agent = IQLLearner.create(jax.random.key(0), obs[0], act[0], expectile=0.9, beta=10.0)
    agent, info = agent.update_n(dataset, num_steps=1000, batch_size=256)   # 1000 fused steps
    actions = agent.sample_actions(observations, key, temperature=0.0)      # the policy mean

`dataset` is any pytree with a jit-able `sample(key, batch_size)` returning a batch with fields
`observations, actions, rewards, masks, next_observations` (e.g. `dataset.Dataset`).
"""

import difflib
import functools
from typing import Any, Callable, Mapping, Optional

import flax.struct as struct
import jax
import jax.numpy as jnp
import optax
from flax.training.train_state import TrainState

from networks import CriticEnsemble, GaussianPolicy, ValueCritic, gaussian_log_prob, gaussian_sample

# The original code caps the AWR weight exp(beta * A) at 100 so rare large advantages
# cannot dominate a batch.
MAX_AWR_WEIGHT = 100.0


# ----------------------------------------------------------------------------------------------
# Losses. Each is (params, ...) -> (loss, info) with scalar info, differentiated w.r.t. params.
# ----------------------------------------------------------------------------------------------


def expectile_loss(diff: jax.Array, expectile: float | jax.Array) -> jax.Array:
    """The paper's asymmetric squared loss L_2^tau(u) = |tau - 1(u < 0)| * u^2, elementwise.

    Minimising E[L_2^tau(x - v)] over v gives the tau-expectile of x: tau = 0.5 is the mean,
    tau -> 1 approaches the maximum.
    """
    weight = jnp.where(diff < 0, 1.0 - expectile, expectile)
    return weight * diff**2


def value_loss(
    params: Any, value: TrainState, observations: jax.Array, target_q: jax.Array,
    elementwise_loss: Callable[[jax.Array], jax.Array],
) -> tuple[jax.Array, dict]:
    """L_V(psi) = E[ f(Q_target(s, a) - V(s)) ] over dataset (s, a).

    IQL's f is the expectile loss L_2^tau (`partial(expectile_loss, expectile=tau)`); other
    convex f fit V to other statistics of Q (idql.py). `target_q` is min over the target
    critic's heads; no gradient flows into it.
    """
    v = value.apply_fn({"params": params}, observations)
    loss = elementwise_loss(jax.lax.stop_gradient(target_q) - v).mean()
    return loss, {"value_loss": loss, "v_mean": v.mean()}


def critic_loss(
    params: Any, critic: TrainState, batch: Any, next_v: jax.Array, discount
) -> tuple[jax.Array, dict]:
    """L_Q(theta): TD regression of every critic head onto r + discount * mask * V(s').

    Squared errors are averaged over the batch and summed over the heads, as the original.
    `masks` is 0 only at true terminals, so time-limit truncations still bootstrap.
    """
    target = batch.rewards + discount * batch.masks * jax.lax.stop_gradient(next_v)
    qs = critic.apply_fn({"params": params}, batch.observations, batch.actions)  # (num_qs, B)
    loss = ((qs - target) ** 2).mean(axis=-1).sum()
    return loss, {"critic_loss": loss, "q_mean": qs.mean(), "q_target_mean": target.mean()}


def awr_weights(advantages: jax.Array, beta) -> jax.Array:
    """AWR's weights min(exp(beta * A), 100), no gradient through A."""
    return jnp.minimum(jnp.exp(beta * jax.lax.stop_gradient(advantages)), MAX_AWR_WEIGHT)


def effective_sample_share(weights: jax.Array) -> jax.Array:
    """Kish's effective sample size as a share of the rows: (sum w)^2 / (n sum w^2)."""
    return weights.sum() ** 2 / (weights.size * (weights**2).sum())


def awr_actor_loss(
    params: Any, actor: TrainState, batch: Any, advantages: jax.Array, beta, dropout_key: jax.Array
) -> tuple[jax.Array, dict]:
    """L_pi(phi): advantage-weighted regression, -E[min(exp(beta * A), 100) * log pi(a|s)].

    With beta = 0 every weight is 1 and this is behavior cloning by maximum likelihood.
    """
    weights = awr_weights(advantages, beta)
    means, log_stds = actor.apply_fn(
        {"params": params}, batch.observations, training=True, rngs={"dropout": dropout_key}
    )
    log_probs = gaussian_log_prob(means, log_stds, batch.actions)
    loss = -(weights * log_probs).mean()
    info = {
        "actor_loss": loss,
        "adv_mean": advantages.mean(),
        "adv_std": advantages.std(),
        "adv_max": advantages.max(),
        "awr_weight_mean": weights.mean(),
        "awr_weight_max": weights.max(),
        "awr_weight_ess": effective_sample_share(weights),
        "log_prob_mean": log_probs.mean(),
        "policy_std_mean": jnp.exp(log_stds).mean(),
    }
    return loss, info


# ----------------------------------------------------------------------------------------------
# The critic's two steps and the scan loop (IDQL, idql.py, reuses them).
# ----------------------------------------------------------------------------------------------


def check_batch(batch) -> None:
    """Shapes of a batch, checked when an update is traced (no cost at run time): (B, obs_dim)
    observations and next observations, (B, act_dim) actions, (B,) rewards and masks. A (B, 1)
    reward would otherwise broadcast against (B,) values into a silent (B, B) TD target. (Plain
    checks rather than chex's: this file needs only jax, flax and optax.)"""
    b = batch.observations.shape[0]
    expected = {"observations": (b, batch.observations.shape[-1]), "next_observations": batch.observations.shape,
                "actions": (b, batch.actions.shape[-1]), "rewards": (b,), "masks": (b,)}
    for name, shape in expected.items():
        if getattr(batch, name).shape != shape:
            raise ValueError(f"batch.{name} has shape {getattr(batch, name).shape}, expected {shape}")


def value_step(value: TrainState, critic: TrainState, target_critic_params, batch,
               elementwise_loss: Callable[[jax.Array], jax.Array]):
    """One L_V step on min(Q_target)(s, a) with loss f = `elementwise_loss` (IQL: L_2^tau);
    returns (new value state, that min, info)."""
    target_q = critic.apply_fn({"params": target_critic_params}, batch.observations, batch.actions).min(axis=0)
    grads, info = jax.grad(value_loss, has_aux=True)(
        value.params, value, batch.observations, target_q, elementwise_loss)
    return value.apply_gradients(grads=grads), target_q, info


def critic_step(critic: TrainState, value: TrainState, batch, discount):
    """One L_Q step, bootstrapping from `value` (the freshly updated one) at s'."""
    next_v = value.apply_fn({"params": value.params}, batch.next_observations)
    grads, info = jax.grad(critic_loss, has_aux=True)(critic.params, critic, batch, next_v, discount)
    return critic.apply_gradients(grads=grads), info


def scan_updates(agent: Any, data: Any, num_steps: int, batch_size: int) -> tuple[Any, dict]:
    """`num_steps` of `agent._update` under `lax.scan`, each on `data.sample(key, batch_size)`
    with `key` split from the agent's carried rng; returns the agent and the mean metrics."""

    def step(agent, _):
        rng, key = jax.random.split(agent.rng)
        return agent.replace(rng=rng)._update(data.sample(key, batch_size))

    agent, infos = jax.lax.scan(step, agent, length=num_steps)
    return agent, jax.tree.map(jnp.mean, infos)


# ----------------------------------------------------------------------------------------------
# The agent.
# ----------------------------------------------------------------------------------------------


# The hyperparameters `create` reads, with their defaults: the IQL paper's locomotion settings
# (configs/iql_mujoco.py). The original's `create` keyword defaults (expectile 0.8, temperature
# 0.1) match none of the paper's experiments, so the paper's are the defaults here.
DEFAULTS = {
    "hidden_dims": (256, 256),  # actor, critic and value MLP widths
    "num_qs": 2,  # critic heads; value and actor use their minimum
    "actor_lr": 3e-4,
    "critic_lr": 3e-4,
    "value_lr": 3e-4,
    "cosine_decay": True,  # actor learning rate cosine-decayed to 0 over max_steps
    "max_steps": 1_000_000,
    "dropout_rate": 0.0,  # actor dropout (0.1 for Kitchen/Adroit)
    "expectile": 0.7,  # tau of L_2^tau
    "beta": 3.0,  # AWR inverse temperature; 0 = behavior cloning
    "discount": 0.99,
    "target_tau": 0.005,  # Polyak rate of the target critic
}

# Allowed ranges: a bad value fails in `create`, naming the field, not deep inside a traced
# computation.
HYPERPARAMETER_RANGES = {
    "expectile": (lambda x: 0.0 < x < 1.0, "in (0, 1)"),
    "beta": (lambda x: x >= 0.0, ">= 0 (an inverse temperature)"),
    "discount": (lambda x: 0.0 <= x <= 1.0, "in [0, 1]"),
    "target_tau": (lambda x: 0.0 <= x <= 1.0, "in [0, 1]"),
    "actor_lr": (lambda x: x > 0.0, "> 0"),
    "critic_lr": (lambda x: x > 0.0, "> 0"),
    "value_lr": (lambda x: x > 0.0, "> 0"),
    "dropout_rate": (lambda x: 0.0 <= x < 1.0, "in [0, 1)"),
    "max_steps": (lambda x: x > 0, "> 0"),
}


def resolve_config(defaults: Mapping, config: Optional[Mapping], overrides: Mapping) -> dict:
    """`defaults` updated by `config` and then by `overrides`. A field that is not in `defaults`
    is an error naming it and the nearest known field (a typo must not train the default);
    `pick_fields` takes an agent's fields out of a larger mapping such as a run's config."""
    given = {**(config or {}), **overrides}
    for name in given:
        if name not in defaults:
            near = difflib.get_close_matches(name, list(defaults), n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise TypeError(f"unknown hyperparameter {name!r}{hint} (known: {', '.join(sorted(defaults))})")
    return {**defaults, **given}


def pick_fields(config: Mapping, defaults: Mapping) -> dict:
    """The fields of `config` that an agent with `defaults` reads (for a run's whole config)."""
    return {k: config[k] for k in defaults if k in config}


def check_hyperparameters(config: Mapping, ranges: Mapping = HYPERPARAMETER_RANGES) -> None:
    """Raise a ValueError naming the field for any out-of-range hyperparameter in `config`."""
    for name, (ok, allowed) in ranges.items():
        if name in config and not ok(config[name]):
            raise ValueError(f"config.{name} must be {allowed}, got {config[name]!r}")
    dims = tuple(config["hidden_dims"])
    if not dims or any(int(d) <= 0 for d in dims):
        raise ValueError(f"config.hidden_dims must be positive layer widths, got {dims!r}")


def with_rate_in_state(make: Callable[[Any], optax.GradientTransformation],
                       learning_rate: float) -> optax.GradientTransformation:
    """`make(learning_rate)` with the rate held in the optimizer state (optax.inject_hyperparams),
    a leaf like `beta`: stacked agents may train at different rates (a sweep) in one program."""
    return optax.inject_hyperparams(make)(learning_rate=learning_rate)


def adam(learning_rate: float) -> optax.GradientTransformation:
    """Adam at a rate held in its state (the critic's and value's optimizer); its other
    constants stay constants."""
    return with_rate_in_state(lambda learning_rate: optax.adam(learning_rate), learning_rate)


def actor_adam(config: Mapping) -> optax.GradientTransformation:
    """Adam at `actor_lr`; with `cosine_decay` the rate decays to 0 over `max_steps`, as the
    original's offline runs (the decay starts from the rate held in the state)."""

    def make(learning_rate):
        if config["cosine_decay"]:
            learning_rate = optax.cosine_decay_schedule(learning_rate, int(config["max_steps"]))
        return optax.adam(learning_rate)

    return with_rate_in_state(make, config["actor_lr"])


class IQLLearner(struct.PyTreeNode):
    """An IQL agent: actor, critic ensemble, value net and target critic, as one pytree.

    All methods are pure: they return a new agent. Float hyperparameters (`expectile`, `beta`,
    `discount`, `target_tau`) are array leaves, so they are traced (changing them does not
    recompile) and can carry a seed axis under `jax.vmap`. Structural choices (layer sizes,
    number of critic heads, learning-rate schedules) live in the modules and optax transforms
    of the TrainStates, which are static.

    Fields:
      rng: the carried PRNG key; every random draw in `update`/`update_n` is split from it.
      actor, critic, value: flax TrainStates (params + Adam state).
      target_critic_params: Polyak average of the critic params; a plain pytree, no optimizer.
    """

    rng: jax.Array
    actor: TrainState
    critic: TrainState
    value: TrainState
    target_critic_params: Any
    expectile: jax.Array
    beta: jax.Array
    discount: jax.Array
    target_tau: jax.Array

    @staticmethod
    def fields(config: Mapping) -> dict:
        """The fields of `config` (e.g. a run's whole config) that `create` reads."""
        return pick_fields(config, DEFAULTS)

    @classmethod
    def create(
        cls, key: jax.Array, observations: jax.Array, actions: jax.Array,
        config: Optional[Mapping] = None, **overrides,
    ) -> "IQLLearner":
        """Initialise networks and optimizers.

        Args:
          key: a JAX PRNG key; the whole agent (init and training randomness) derives from it.
          observations, actions: an example observation (obs_dim,) and action (action_dim,),
            with or without a leading batch axis; only their shapes are used.
          config: optional mapping (dict, ml_collections.ConfigDict) of `DEFAULTS` fields to
            change; any other field is an error (`IQLLearner.fields` picks them out of a run's
            whole config).
          **overrides: the same fields as keywords, e.g. `create(key, obs, act, beta=10.0)`.
        """
        config = resolve_config(DEFAULTS, config, overrides)
        check_hyperparameters(config)
        observations = jnp.atleast_2d(jnp.asarray(observations, jnp.float32))
        actions = jnp.atleast_2d(jnp.asarray(actions, jnp.float32))
        hidden_dims = tuple(int(d) for d in config["hidden_dims"])
        rng, actor_key, critic_key, value_key = jax.random.split(key, 4)

        actor_def = GaussianPolicy(hidden_dims, actions.shape[-1], dropout_rate=float(config["dropout_rate"]))
        actor = TrainState.create(
            apply_fn=actor_def.apply,
            params=actor_def.init(actor_key, observations)["params"],
            tx=actor_adam(config),
        )

        critic_def = CriticEnsemble(hidden_dims, num_qs=int(config["num_qs"]))
        critic_params = critic_def.init(critic_key, observations, actions)["params"]
        critic = TrainState.create(
            apply_fn=critic_def.apply, params=critic_params, tx=adam(config["critic_lr"])
        )

        value_def = ValueCritic(hidden_dims)
        value = TrainState.create(
            apply_fn=value_def.apply,
            params=value_def.init(value_key, observations)["params"],
            tx=adam(config["value_lr"]),
        )

        def leaf(x):
            return jnp.asarray(x, jnp.float32)

        return cls(
            rng=rng,
            actor=actor,
            critic=critic,
            value=value,
            # A copy: sharing buffers with critic.params would break buffer donation.
            target_critic_params=jax.tree.map(jnp.copy, critic_params),
            expectile=leaf(config["expectile"]),
            beta=leaf(config["beta"]),
            discount=leaf(config["discount"]),
            target_tau=leaf(config["target_tau"]),
        )

    def _update(self, batch: Any) -> tuple["IQLLearner", dict]:
        """One IQL step in the original order: value -> actor -> critic -> target."""
        check_batch(batch)
        rng, dropout_key = jax.random.split(self.rng)

        # 1. Value: expectile of the *target* critic's min over heads.
        value, target_q, value_info = value_step(
            self.value, self.critic, self.target_critic_params, batch,
            functools.partial(expectile_loss, expectile=self.expectile))

        # 2. Actor: advantage from the target critic and the *new* value.
        advantages = target_q - value.apply_fn({"params": value.params}, batch.observations)
        grads, actor_info = jax.grad(awr_actor_loss, has_aux=True)(
            self.actor.params, self.actor, batch, advantages, self.beta, dropout_key
        )
        actor = self.actor.apply_gradients(grads=grads)

        # 3. Critic: bootstrap from the *new* value at s'.
        critic, critic_info = critic_step(self.critic, value, batch, self.discount)

        # 4. Polyak average of the new critic into the target.
        target_critic_params = optax.incremental_update(
            critic.params, self.target_critic_params, self.target_tau
        )

        new_agent = self.replace(
            rng=rng,
            actor=actor,
            critic=critic,
            value=value,
            target_critic_params=target_critic_params,
        )
        return new_agent, {**value_info, **actor_info, **critic_info}

    @jax.jit
    def update(self, batch: Any) -> tuple["IQLLearner", dict]:
        """One fused gradient step on `batch`, in the order of the original IQL code:

        1. value  <- L_V: expectile loss against min(Q_target)(s, a)
        2. actor  <- L_pi: AWR with A = min(Q_target)(s, a) - V_new(s)
        3. critic <- L_Q: TD loss with target r + discount * mask * V_new(s')
        4. target <- (1 - target_tau) * target + target_tau * critic

        Returns the new agent and a dict of scalar metrics.
        """
        return self._update(batch)

    @functools.partial(jax.jit, static_argnames=("num_steps", "batch_size"), donate_argnums=0)
    def update_n(self, data: Any, num_steps: int, batch_size: int) -> tuple["IQLLearner", dict]:
        """`num_steps` updates under `lax.scan`, each on a batch sampled on the device.

        Equivalent to repeating `rng, key = split(agent.rng); batch = data.sample(key,
        batch_size); agent = agent.replace(rng=rng).update(batch)`, but in one compiled call.
        `data` is a jit argument (never closed over), so a new dataset of the same shape does
        not recompile. The agent is donated: do not use `self` afterwards. Returns the new
        agent and the metrics averaged over the `num_steps` steps.
        """
        return scan_updates(self, data, num_steps, batch_size)

    @jax.jit
    def sample_actions(
        self, observations: jax.Array, key: jax.Array, temperature: Optional[float | jax.Array] = None
    ) -> jax.Array:
        """Actions for (..., obs_dim) observations: mean + temperature * std * noise in [-1, 1].

        Without `temperature` (as with IDQLLearner): the evaluation action, here the policy mean
        (temperature 0); 1 samples the full Gaussian (online data collection).
        """
        temperature = 0.0 if temperature is None else temperature
        means, log_stds = self.actor.apply_fn({"params": self.actor.params}, observations)
        return gaussian_sample(key, means, log_stds, temperature)
