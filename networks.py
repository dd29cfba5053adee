"""Neural networks for Implicit Q-Learning (Kostrikov, Nair, Levine, ICLR 2022).

Everything here is a plain Flax module or a pure function on arrays; nothing knows about
losses, data or training. The shapes and initialisation follow the original IQL code:

- `MLP`: Dense layers, orthogonal init (scale sqrt(2)), zero bias, ReLU after every hidden
  layer, optional LayerNorm and dropout.
- `Critic` / `CriticEnsemble`: Q(s, a) from concat(s, a); the ensemble (twin critic by
  default) is one `nn.vmap`ed module, so both heads run as one batched matmul.
- `ValueCritic`: V(s).
- `GaussianPolicy`: the IQL actor. mean = tanh(Dense(MLP(s))) -- tanh on the mean, not a
  tanh-transformed distribution, so log-probs need no log-det term -- and a state-independent
  log-std parameter initialised at 0 and clipped to [-5, 2].

Usage::

    policy = GaussianPolicy(hidden_dims=(256, 256), action_dim=3)
    params = policy.init(key, observations)
    means, log_stds = policy.apply(params, observations)
    log_probs = gaussian_log_prob(means, log_stds, actions)     # (batch,)
"""

from typing import Callable, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

LOG_STD_MIN = -5.0
LOG_STD_MAX = 2.0


def default_init(scale: float = 2.0**0.5) -> nn.initializers.Initializer:
    """Orthogonal kernel init, as in the original IQL code."""
    return nn.initializers.orthogonal(scale)


# The IDQL code's Dense init for its critic, value and the noise model's input and output layers
# (jaxrl5/networks/mlp.py:6); inside the residual blocks it keeps flax's default, lecun_normal.
xavier_init = nn.initializers.xavier_uniform


class MLP(nn.Module):
    """Multi-layer perceptron.

    `hidden_dims` lists the output width of every Dense layer, the last one included. The
    activation (then dropout) follows every layer but the last, and the last too when
    `activate_final`. With `use_layer_norm`, LayerNorm sits between Dense and activation.
    """

    hidden_dims: Sequence[int]
    activation: Callable[[jax.Array], jax.Array] = nn.relu
    activate_final: bool = False
    use_layer_norm: bool = False
    dropout_rate: float = 0.0
    kernel_init: Optional[Callable] = None  # default: orthogonal(sqrt 2)

    @nn.compact
    def __call__(self, x: jax.Array, training: bool = False) -> jax.Array:
        for i, width in enumerate(self.hidden_dims):
            x = nn.Dense(width, kernel_init=self.kernel_init or default_init())(x)
            if i + 1 < len(self.hidden_dims) or self.activate_final:
                if self.use_layer_norm:
                    x = nn.LayerNorm()(x)
                x = self.activation(x)
                if self.dropout_rate > 0.0:
                    x = nn.Dropout(rate=self.dropout_rate)(x, deterministic=not training)
        return x


class ValueCritic(nn.Module):
    """State value V(s): observations (..., obs_dim) -> (...); `input_layer_norm` normalises
    the observations first (IDQL's value net)."""

    hidden_dims: Sequence[int]
    use_layer_norm: bool = False
    input_layer_norm: bool = False
    kernel_init: Optional[Callable] = None

    @nn.compact
    def __call__(self, observations: jax.Array) -> jax.Array:
        if self.input_layer_norm:
            observations = nn.LayerNorm()(observations)
        v = MLP((*self.hidden_dims, 1), use_layer_norm=self.use_layer_norm, kernel_init=self.kernel_init)(observations)
        return jnp.squeeze(v, -1)


class Critic(nn.Module):
    """One action value Q(s, a): (..., obs_dim), (..., act_dim) -> (...)."""

    hidden_dims: Sequence[int]
    use_layer_norm: bool = False
    kernel_init: Optional[Callable] = None

    @nn.compact
    def __call__(self, observations: jax.Array, actions: jax.Array) -> jax.Array:
        x = jnp.concatenate([observations, actions], axis=-1)
        q = MLP((*self.hidden_dims, 1), use_layer_norm=self.use_layer_norm, kernel_init=self.kernel_init)(x)
        return jnp.squeeze(q, -1)


class CriticEnsemble(nn.Module):
    """`num_qs` independent critics as one module: returns (num_qs, ...).

    `nn.vmap` stacks the parameters on a leading axis (each head initialised with its own
    key), so the heads share one batched matmul instead of `num_qs` separate calls.
    """

    hidden_dims: Sequence[int]
    num_qs: int = 2
    use_layer_norm: bool = False
    kernel_init: Optional[Callable] = None

    @nn.compact
    def __call__(self, observations: jax.Array, actions: jax.Array) -> jax.Array:
        ensemble = nn.vmap(
            Critic,
            variable_axes={"params": 0},
            split_rngs={"params": True},
            in_axes=None,
            out_axes=0,
            axis_size=self.num_qs,
        )
        return ensemble(self.hidden_dims, self.use_layer_norm, self.kernel_init)(observations, actions)


class GaussianPolicy(nn.Module):
    """The IQL actor: a diagonal Gaussian with mean tanh(Dense(MLP(s))).

    Returns `(means, log_stds)`, means (..., action_dim) in (-1, 1) and log_stds
    (action_dim,), a state-independent parameter clipped to [LOG_STD_MIN, LOG_STD_MAX].
    Dropout (Kitchen/Adroit configs) is active only with `training=True` and a 'dropout' rng.
    """

    hidden_dims: Sequence[int]
    action_dim: int
    dropout_rate: float = 0.0

    @nn.compact
    def __call__(self, observations: jax.Array, training: bool = False):
        x = MLP(self.hidden_dims, activate_final=True, dropout_rate=self.dropout_rate)(
            observations, training=training
        )
        means = jnp.tanh(nn.Dense(self.action_dim, kernel_init=default_init())(x))
        log_stds = self.param("log_stds", nn.initializers.zeros, (self.action_dim,))
        return means, jnp.clip(log_stds, LOG_STD_MIN, LOG_STD_MAX)


def gaussian_log_prob(means: jax.Array, log_stds: jax.Array, actions: jax.Array) -> jax.Array:
    """log N(actions; means, exp(log_stds)^2), summed over the last (action) axis."""
    z = (actions - means) * jnp.exp(-log_stds)
    return jnp.sum(-0.5 * z**2 - log_stds - 0.5 * jnp.log(2.0 * jnp.pi), axis=-1)


def gaussian_sample(
    key: jax.Array, means: jax.Array, log_stds: jax.Array, temperature: float | jax.Array
) -> jax.Array:
    """mean + temperature * std * noise, clipped to [-1, 1]; temperature 0 gives the mean."""
    noise = jax.random.normal(key, means.shape, means.dtype)
    return jnp.clip(means + temperature * jnp.exp(log_stds) * noise, -1.0, 1.0)


# ----------------------------------------------------------------------------------------------
# IDQL (Hansen-Estruch et al. 2023): the diffusion noise model and its schedules.
# ----------------------------------------------------------------------------------------------


class FourierFeatures(nn.Module):
    """Learned Fourier features of the diffusion time: [cos(2 pi t W), sin(2 pi t W)]."""

    output_size: int

    @nn.compact
    def __call__(self, t: jax.Array) -> jax.Array:
        w = self.param("kernel", nn.initializers.normal(0.2), (self.output_size // 2, t.shape[-1]))
        f = 2.0 * jnp.pi * t @ w.T
        return jnp.concatenate([jnp.cos(f), jnp.sin(f)], axis=-1)


class LNResNetBlock(nn.Module):
    """x + Dense(act(Dense_4x(LayerNorm(Dropout(x))))), the IDQL residual block (flax's
    default lecun-normal init inside, as jaxrl5/networks/resnet.py)."""

    features: int
    inner_features: int
    dropout_rate: float = 0.1
    activation: Callable[[jax.Array], jax.Array] = nn.swish

    @nn.compact
    def __call__(self, x: jax.Array, training: bool = False) -> jax.Array:
        y = nn.Dropout(rate=self.dropout_rate)(x, deterministic=not training) if self.dropout_rate > 0 else x
        y = nn.LayerNorm()(y)
        y = self.activation(nn.Dense(self.inner_features)(y))
        return x + nn.Dense(self.features)(y)


class DiffusionNoiseModel(nn.Module):
    """eps(a_t, s, t): predicts the noise in a noisy action (IDQL's LN-ResNet).

    t (an integer step index, (..., 1)) -> `time_dim` learned Fourier features -> MLP
    (2 time_dim, 2 time_dim, swish); then concat(a_t, s, time features) -> Dense(hidden) ->
    `num_blocks` LN-ResNet blocks (width `hidden_dim`, inner `4 * hidden_dim`, dropout) ->
    swish -> Dense(action_dim). Xavier-uniform init outside the blocks, as the IDQL code
    (jaxrl5/agents/ddpm_iql_simple/ddpm_iql_learner.py:88-109).
    """

    action_dim: int
    hidden_dim: int = 256
    num_blocks: int = 3
    time_dim: int = 128
    dropout_rate: float = 0.1
    num_steps: int = 0  # T: with it, the time features are computed once per step and gathered

    @nn.compact
    def __call__(self, noisy_actions, observations, t, training: bool = False) -> jax.Array:
        fourier = FourierFeatures(self.time_dim)
        time_mlp = MLP((2 * self.time_dim, 2 * self.time_dim), activation=nn.swish, kernel_init=xavier_init())
        if self.num_steps:
            # t takes only T values: embed those T and gather (the same function and gradient,
            # without a time MLP per row: ~5% of an update's FLOPs, most of acting's per-row work).
            table = time_mlp(fourier(jnp.arange(self.num_steps, dtype=jnp.float32)[:, None]))
            time = table[t[..., 0].astype(jnp.int32)]
        else:
            time = time_mlp(fourier(t.astype(jnp.float32)))
        x = jnp.concatenate([noisy_actions, observations, time], axis=-1)
        x = nn.Dense(self.hidden_dim, kernel_init=xavier_init())(x)
        for _ in range(self.num_blocks):
            x = LNResNetBlock(self.hidden_dim, 4 * self.hidden_dim, self.dropout_rate)(x, training=training)
        return nn.Dense(self.action_dim, kernel_init=xavier_init())(nn.swish(x))


def vp_beta_schedule(steps: int, b_min: float = 0.1, b_max: float = 10.0) -> jax.Array:
    """Variance-preserving betas: beta_t = 1 - exp(-b_min/T - (b_max - b_min)(2t - 1) / (2 T^2))."""
    t = jnp.arange(1, steps + 1, dtype=jnp.float32)
    return 1.0 - jnp.exp(-b_min / steps - 0.5 * (b_max - b_min) * (2 * t - 1) / steps**2)


def linear_beta_schedule(steps: int, beta_start: float = 1e-4, beta_end: float = 2e-2) -> jax.Array:
    return jnp.linspace(beta_start, beta_end, steps, dtype=jnp.float32)


def cosine_beta_schedule(steps: int, s: float = 0.008) -> jax.Array:
    """Nichol & Dhariwal's cosine schedule: alpha_hat(t) = cos^2((t/T + s) / (1 + s) * pi / 2)."""
    t = jnp.linspace(0, steps, steps + 1, dtype=jnp.float32) / steps
    alpha_hat = jnp.cos((t + s) / (1 + s) * jnp.pi / 2) ** 2
    return jnp.clip(1 - alpha_hat[1:] / alpha_hat[:-1], 0, 0.999)


BETA_SCHEDULES = {"vp": vp_beta_schedule, "linear": linear_beta_schedule, "cosine": cosine_beta_schedule}
