"""IDQL (Hansen-Estruch, Kostrikov, Janner, Kuba, Levine 2023): IQL's critic as an actor-critic
with a diffusion behavior policy whose samples the critic selects.

- Critic: IQL's value and critic steps (learner.value_step / learner.critic_step), with the
  value loss f generalised (`value_objective`, the original's `critic_objective`):
      expectile    |tau - 1(u < 0)| u^2                  V -> the tau-expectile of Q (IQL)
      quantile     |tau - 1(u < 0)| |u|                  V -> the tau-quantile of Q
      exponential  dL/dV = -(w(k u) - 1), w = exp (linear past u = log 6 / k), k = `exp_scale`
                   V -> log E[exp(k Q)] / k (a soft maximum) while k u stays below log 6
- Actor: a DDPM noise model eps(a_t, s, t) trained on the plain denoising loss
      L(theta) = E_{t, eps} || eps - eps_theta(sqrt(abar_t) a + sqrt(1 - abar_t) eps, s, t) ||^2
  on dataset actions; it never reads Q. An EMA copy of its parameters samples.
- Acting: for each state draw `num_samples` actions with the reverse process (clipped to
  [-1, 1] after every step), score them with min of the target critic's heads, and take the
  argmax (IDQL-A) -- or resample one with the critic-implied weights (`selection='resample'`).

Usage::

    agent = IDQLLearner.create(jax.random.key(0), obs[0], act[0])            # the IDQL paper's defaults
    agent = IDQLLearner.create(jax.random.key(0), obs[0], act[0], value_objective="quantile")
    agent, info = agent.update_n(dataset, num_steps=1000, batch_size=256)
    actions = agent.sample_actions(observations, key, temperature=1.0)   # (..., action_dim)
"""

import functools
import math
from typing import Any, Callable, Mapping, Optional

import flax.struct as struct
import jax
import jax.numpy as jnp
import optax
from flax.training.train_state import TrainState

import learner
from learner import (
    adam,
    check_batch,
    check_hyperparameters,
    critic_step,
    expectile_loss,
    pick_fields,
    resolve_config,
    scan_updates,
    value_step,
    with_rate_in_state,
)
from networks import BETA_SCHEDULES, CriticEnsemble, DiffusionNoiseModel, ValueCritic, xavier_init

VALUE_OBJECTIVES = ("expectile", "quantile", "exponential")
SELECTIONS = ("argmax", "resample")

# The hyperparameters `create` reads, with their defaults (configs/idql_mujoco.py): IQL's critic
# fields, then the value objective and the diffusion actor's.
DEFAULTS = {
    **{k: v for k, v in learner.DEFAULTS.items() if k not in ("beta", "dropout_rate")},
    "value_objective": "expectile",  # V's statistic of Q; `expectile` is tau for all three
    "exp_scale": 1.0,  # k of the exponential objective
    "diffusion_steps": 5,  # T
    "beta_schedule": "vp",  # DDPM noise schedule: 'vp', 'cosine' or 'linear'
    "diffusion_hidden_dim": 256,  # LN-ResNet width
    "diffusion_blocks": 3,
    "diffusion_dropout": 0.1,
    "time_dim": 128,  # Fourier time features; the conditioning MLP is (2 time_dim, 2 time_dim)
    "actor_weight_decay": 1e-4,  # AdamW's, optax's default, as the original's optax.adamw
    "decay_steps": 0,  # cosine decay of the actor's rate over this many steps (0: max_steps)
    "ema_rate": 0.001,  # Polyak rate of the sampling copy of the noise model
    "num_samples": 64,  # candidate actions per state when acting
    "selection": "argmax",  # 'argmax' of min Q (IDQL-A) or 'resample' by the implied weights
}

HYPERPARAMETER_RANGES = {
    **{k: v for k, v in learner.HYPERPARAMETER_RANGES.items() if k not in ("beta", "dropout_rate")},
    "exp_scale": (lambda x: x > 0.0, "> 0"),
    "ema_rate": (lambda x: 0.0 <= x <= 1.0, "in [0, 1]"),
    "diffusion_dropout": (lambda x: 0.0 <= x < 1.0, "in [0, 1)"),
    "diffusion_steps": (lambda x: x >= 1, ">= 1"),
    "num_samples": (lambda x: x >= 1, ">= 1"),
    "actor_weight_decay": (lambda x: x >= 0.0, ">= 0"),
    "decay_steps": (lambda x: x >= 0, ">= 0"),
}

# The exponential objective's weight exp(k u) grows linearly past k u = log 6, so that the
# largest advantages keep pulling V up (a hard clip would zero their gradient). The original
# clips at log 6 and also offers this linear form ('first'): jaxrl5/agents/ddpm_iql/
# ddpm_iql_learner.py:24-37.
EXP_WEIGHT_KNOT = math.log(6.0)


def exponential_weight(x: jax.Array) -> jax.Array:
    """exp(x) up to x = log 6, then its tangent line: continuous, increasing, no overflow."""
    knot = math.exp(EXP_WEIGHT_KNOT)
    return jnp.where(x < EXP_WEIGHT_KNOT, jnp.exp(jnp.minimum(x, EXP_WEIGHT_KNOT)),
                     knot * (1.0 + x - EXP_WEIGHT_KNOT))


# ----------------------------------------------------------------------------------------------
# The generalised value objective and its implied policy weights.
# ----------------------------------------------------------------------------------------------


def quantile_loss(diff: jax.Array, tau: float | jax.Array) -> jax.Array:
    """|tau - 1(u < 0)| * |u|, elementwise: V becomes the tau-quantile of Q."""
    return jnp.where(diff < 0, 1.0 - tau, tau) * jnp.abs(diff)


def exponential_loss(diff: jax.Array, scale: float | jax.Array) -> jax.Array:
    """(sg[w(k u)] - 1) * u with k = `scale`, elementwise, as the original: its gradient in V
    is -(w(k u) - 1), zero where E[w(k (Q - V))] = 1, i.e. V = log E[exp(k Q)] / k while
    k u < log 6 (a soft maximum over dataset actions), and monotone in u everywhere.
    """
    weight = jax.lax.stop_gradient(exponential_weight(scale * diff))
    return (weight - 1.0) * diff


def value_objective_loss(objective: str, tau, scale) -> Callable[[jax.Array], jax.Array]:
    """The elementwise f of L_V for `objective` (tau: the expectile / quantile level)."""
    if objective == "expectile":
        return functools.partial(expectile_loss, expectile=tau)
    if objective == "quantile":
        return functools.partial(quantile_loss, tau=tau)
    if objective == "exponential":
        return functools.partial(exponential_loss, scale=scale)
    raise ValueError(f"unknown value objective {objective!r}; choose one of {VALUE_OBJECTIVES}")


def critic_implied_weights(advantages: jax.Array, objective: str, tau, scale) -> jax.Array:
    """IDQL's implicit-actor weights w(A) = |f'(A)| / |A| of value loss f, for resampling
    behavior samples: expectile |tau - 1(A < 0)|, quantile |tau - 1(A < 0)| / |A|,
    exponential (w(k A) - 1) / (k A), increasing in A."""
    asymmetric = jnp.where(advantages < 0, 1.0 - tau, tau)
    if objective == "expectile":
        return asymmetric
    safe = jnp.where(jnp.abs(advantages) < 1e-6, 1e-6, advantages)
    if objective == "quantile":
        return asymmetric / jnp.abs(safe)
    if objective == "exponential":
        return (exponential_weight(scale * safe) - 1.0) / (scale * safe)
    raise ValueError(f"unknown value objective {objective!r}; choose one of {VALUE_OBJECTIVES}")


# ----------------------------------------------------------------------------------------------
# The diffusion actor.
# ----------------------------------------------------------------------------------------------


def denoising_loss(params, actor: TrainState, batch, alpha_hats: jax.Array, key: jax.Array):
    """The DDPM loss: predict the noise added to dataset actions at a uniformly drawn step."""
    t_key, noise_key, dropout_key = jax.random.split(key, 3)
    actions = batch.actions
    t = jax.random.randint(t_key, (actions.shape[0], 1), 0, alpha_hats.shape[0])
    noise = jax.random.normal(noise_key, actions.shape)
    abar = alpha_hats[t]
    noisy = jnp.sqrt(abar) * actions + jnp.sqrt(1.0 - abar) * noise
    predicted = actor.apply_fn({"params": params}, noisy, batch.observations, t, training=True,
                               rngs={"dropout": dropout_key})
    loss = ((predicted - noise) ** 2).sum(axis=-1).mean()
    return loss, {"actor_loss": loss}


def ddpm_sample(apply_fn, params, observations, key, betas, alpha_hats, temperature, action_dim):
    """The reverse process from x_T ~ N(0, I) to x_0 under lax.scan, clipping to [-1, 1]:
    x_{t-1} = (x_t - beta_t / sqrt(1 - abar_t) eps(x_t, s, t)) / sqrt(alpha_t) + sqrt(beta_t) z."""
    alphas = 1.0 - betas
    init_key, step_key = jax.random.split(key)
    x = jax.random.normal(init_key, observations.shape[:-1] + (action_dim,))

    def step(x, t):
        eps = apply_fn({"params": params}, x, observations, jnp.full(x.shape[:-1] + (1,), t))
        x = (x - betas[t] / jnp.sqrt(1.0 - alpha_hats[t]) * eps) / jnp.sqrt(alphas[t])
        z = jax.random.normal(jax.random.fold_in(step_key, t), x.shape)
        x = x + (t > 0) * jnp.sqrt(betas[t]) * temperature * z
        return jnp.clip(x, -1.0, 1.0), None

    # Unrolled: T is small (5), and XLA then sees (and counts the cost of) every step.
    x, _ = jax.lax.scan(step, x, jnp.arange(betas.shape[0])[::-1], unroll=True)
    return x


def actor_adamw(config: Mapping) -> optax.GradientTransformation:
    """AdamW (weight decay `actor_weight_decay`) at `actor_lr`, cosine-decayed to 0 over
    `decay_steps` (else `max_steps`) with `cosine_decay`: the original's optax.adamw
    (ddpm_iql_simple/ddpm_iql_learner.py:97-119)."""

    def make(learning_rate):
        if config["cosine_decay"]:
            learning_rate = optax.cosine_decay_schedule(learning_rate, int(config["decay_steps"] or config["max_steps"]))
        return optax.adamw(learning_rate, weight_decay=float(config["actor_weight_decay"]))

    return with_rate_in_state(make, config["actor_lr"])


class IDQLLearner(struct.PyTreeNode):
    """An IDQL agent: IQL critic + value + target critic, diffusion actor + its EMA copy.

    Float hyperparameters and the noise schedule are leaves; the number of candidates, the
    value objective, the selection rule and whether the actor trains are static.

    Fields:
      betas, alpha_hats: the DDPM noise schedule beta_t and prod_{s <= t} (1 - beta_s).
      train_actor: False during online fine-tuning, where only the critic learns (IDQL paper).
    """

    rng: jax.Array
    actor: TrainState
    actor_ema_params: Any
    critic: TrainState
    value: TrainState
    target_critic_params: Any
    betas: jax.Array
    alpha_hats: jax.Array
    expectile: jax.Array
    exp_scale: jax.Array
    discount: jax.Array
    target_tau: jax.Array
    ema_rate: jax.Array
    value_objective: str = struct.field(pytree_node=False, default="expectile")
    num_samples: int = struct.field(pytree_node=False, default=64)
    selection: str = struct.field(pytree_node=False, default="argmax")
    train_actor: bool = struct.field(pytree_node=False, default=True)
    action_dim: int = struct.field(pytree_node=False, default=1)

    @staticmethod
    def fields(config: Mapping) -> dict:
        """The fields of `config` (e.g. a run's whole config) that `create` reads."""
        return pick_fields(config, DEFAULTS)

    @classmethod
    def create(cls, key: jax.Array, observations: jax.Array, actions: jax.Array,
               config: Optional[Mapping] = None, **overrides) -> "IDQLLearner":
        """Initialise networks and optimizers from `DEFAULTS`, changed by `config` and then by
        keyword `overrides`; a field not in `DEFAULTS` is an error (`fields` picks them out of
        a run's whole config)."""
        config = resolve_config(DEFAULTS, config, overrides)
        check_hyperparameters(config, HYPERPARAMETER_RANGES)
        for name, allowed in (("value_objective", VALUE_OBJECTIVES), ("selection", SELECTIONS),
                              ("beta_schedule", tuple(BETA_SCHEDULES))):
            if config[name] not in allowed:
                raise ValueError(f"config.{name} must be one of {allowed}, got {config[name]!r}")
        observations = jnp.atleast_2d(jnp.asarray(observations, jnp.float32))
        actions = jnp.atleast_2d(jnp.asarray(actions, jnp.float32))
        hidden_dims = tuple(int(d) for d in config["hidden_dims"])
        rng, actor_key, critic_key, value_key = jax.random.split(key, 4)

        actor_def = DiffusionNoiseModel(actions.shape[-1], int(config["diffusion_hidden_dim"]),
                                        int(config["diffusion_blocks"]), int(config["time_dim"]),
                                        float(config["diffusion_dropout"]), num_steps=int(config["diffusion_steps"]))
        actor_params = actor_def.init(actor_key, actions, observations, jnp.zeros((1, 1)))["params"]
        actor = TrainState.create(apply_fn=actor_def.apply, params=actor_params, tx=actor_adamw(config))

        # Xavier init and a LayerNorm on the value's input, as the IDQL code (unlike IQL's).
        critic_def = CriticEnsemble(hidden_dims, num_qs=int(config["num_qs"]), kernel_init=xavier_init())
        critic_params = critic_def.init(critic_key, observations, actions)["params"]
        critic = TrainState.create(apply_fn=critic_def.apply, params=critic_params, tx=adam(config["critic_lr"]))
        value_def = ValueCritic(hidden_dims, input_layer_norm=True, kernel_init=xavier_init())
        value = TrainState.create(apply_fn=value_def.apply, params=value_def.init(value_key, observations)["params"],
                                  tx=adam(config["value_lr"]))

        betas = BETA_SCHEDULES[config["beta_schedule"]](int(config["diffusion_steps"]))
        return cls(
            rng=rng, actor=actor, actor_ema_params=jax.tree.map(jnp.copy, actor_params), critic=critic, value=value,
            target_critic_params=jax.tree.map(jnp.copy, critic_params), betas=betas,
            alpha_hats=jnp.cumprod(1.0 - betas), expectile=jnp.float32(config["expectile"]),
            exp_scale=jnp.float32(config["exp_scale"]), discount=jnp.float32(config["discount"]),
            target_tau=jnp.float32(config["target_tau"]), ema_rate=jnp.float32(config["ema_rate"]),
            value_objective=config["value_objective"], num_samples=int(config["num_samples"]),
            selection=config["selection"], action_dim=int(actions.shape[-1]),
        )

    def _update(self, batch: Any) -> tuple["IDQLLearner", dict]:
        """Critic as IQL (value -> critic -> target), then the denoising step and the EMA."""
        check_batch(batch)
        rng, actor_key = jax.random.split(self.rng)
        value, _, value_info = value_step(self.value, self.critic, self.target_critic_params, batch,
                                          value_objective_loss(self.value_objective, self.expectile, self.exp_scale))
        critic, critic_info = critic_step(self.critic, value, batch, self.discount)
        target = optax.incremental_update(critic.params, self.target_critic_params, self.target_tau)
        new = self.replace(rng=rng, value=value, critic=critic, target_critic_params=target)
        if not self.train_actor:  # fine-tuning: only the critic learns online, as in the paper
            return new, {**value_info, **critic_info}
        grads, actor_info = jax.grad(denoising_loss, has_aux=True)(
            self.actor.params, self.actor, batch, self.alpha_hats, actor_key)
        actor = self.actor.apply_gradients(grads=grads)
        ema = optax.incremental_update(actor.params, self.actor_ema_params, self.ema_rate)
        return new.replace(actor=actor, actor_ema_params=ema), {**value_info, **critic_info, **actor_info}

    @jax.jit
    def update(self, batch: Any) -> tuple["IDQLLearner", dict]:
        """One fused step: value -> critic -> target, then the actor's denoising step -> EMA."""
        return self._update(batch)

    @functools.partial(jax.jit, static_argnames=("num_steps", "batch_size"), donate_argnums=0)
    def update_n(self, data: Any, num_steps: int, batch_size: int) -> tuple["IDQLLearner", dict]:
        """`num_steps` updates under `lax.scan` on batches sampled on the device (as IQL's)."""
        return scan_updates(self, data, num_steps, batch_size)

    @jax.jit
    def sample_candidates(self, observations: jax.Array, key: jax.Array, temperature=1.0) -> jax.Array:
        """(B, obs_dim) -> (B, num_samples, action_dim) behavior samples from the EMA model."""
        repeated = jnp.repeat(observations[:, None, :], self.num_samples, axis=1)
        return ddpm_sample(self.actor.apply_fn, self.actor_ema_params, repeated, key, self.betas, self.alpha_hats,
                           temperature, self.action_dim)

    @jax.jit
    def select(self, observations: jax.Array, candidates: jax.Array, key: jax.Array) -> jax.Array:
        """Pick one of the candidates per state by min(Q_target): argmax, or critic-weighted resampling."""
        repeated = jnp.repeat(observations[:, None, :], candidates.shape[1], axis=1)
        q = self.critic.apply_fn({"params": self.target_critic_params}, repeated, candidates).min(axis=0)  # (B, N)
        if self.selection == "argmax":
            index = jnp.argmax(q, axis=-1)
        else:
            v = self.value.apply_fn({"params": self.value.params}, observations)[:, None]
            weights = critic_implied_weights(q - v, self.value_objective, self.expectile, self.exp_scale)
            index = jax.random.categorical(key, jnp.log(jnp.maximum(weights, 1e-12)), axis=-1)
        return jnp.take_along_axis(candidates, index[:, None, None], axis=1)[:, 0]

    @jax.jit
    def sample_actions(self, observations: jax.Array, key: jax.Array, temperature=None) -> jax.Array:
        """Actions for (..., obs_dim) observations; all of acting in one compiled call.

        Without `temperature` (as with IQLLearner): the evaluation action, here the authors'
        (the reverse process at noise scale 1, then selection). `temperature` scales the reverse
        process's noise (0 keeps only the randomness of the starting noise x_T).
        """
        temperature = 1.0 if temperature is None else temperature
        flat = observations.reshape(-1, observations.shape[-1])
        sample_key, select_key = jax.random.split(key)
        actions = self.select(flat, self.sample_candidates(flat, sample_key, temperature), select_key)
        return actions.reshape(observations.shape[:-1] + actions.shape[-1:])

