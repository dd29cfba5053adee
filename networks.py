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

from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

LOG_STD_MIN = -5.0
LOG_STD_MAX = 2.0


def default_init(scale: float = jnp.sqrt(2.0)) -> nn.initializers.Initializer:
    """Orthogonal kernel init, as in the original IQL code."""
    return nn.initializers.orthogonal(scale)


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

    @nn.compact
    def __call__(self, x: jax.Array, training: bool = False) -> jax.Array:
        for i, width in enumerate(self.hidden_dims):
            x = nn.Dense(width, kernel_init=default_init())(x)
            if i + 1 < len(self.hidden_dims) or self.activate_final:
                if self.use_layer_norm:
                    x = nn.LayerNorm()(x)
                x = self.activation(x)
                if self.dropout_rate > 0.0:
                    x = nn.Dropout(rate=self.dropout_rate)(x, deterministic=not training)
        return x


class ValueCritic(nn.Module):
    """State value V(s): observations (..., obs_dim) -> (...)."""

    hidden_dims: Sequence[int]
    use_layer_norm: bool = False

    @nn.compact
    def __call__(self, observations: jax.Array) -> jax.Array:
        v = MLP((*self.hidden_dims, 1), use_layer_norm=self.use_layer_norm)(observations)
        return jnp.squeeze(v, -1)


class Critic(nn.Module):
    """One action value Q(s, a): (..., obs_dim), (..., act_dim) -> (...)."""

    hidden_dims: Sequence[int]
    use_layer_norm: bool = False

    @nn.compact
    def __call__(self, observations: jax.Array, actions: jax.Array) -> jax.Array:
        x = jnp.concatenate([observations, actions], axis=-1)
        q = MLP((*self.hidden_dims, 1), use_layer_norm=self.use_layer_norm)(x)
        return jnp.squeeze(q, -1)


class CriticEnsemble(nn.Module):
    """`num_qs` independent critics as one module: returns (num_qs, ...).

    `nn.vmap` stacks the parameters on a leading axis (each head initialised with its own
    key), so the heads share one batched matmul instead of `num_qs` separate calls.
    """

    hidden_dims: Sequence[int]
    num_qs: int = 2
    use_layer_norm: bool = False

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
        return ensemble(self.hidden_dims, self.use_layer_norm)(observations, actions)


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
