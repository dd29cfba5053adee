"""Online data for fine-tuning and the SAC behavior agent: a fixed-capacity replay buffer on
the device, and batches mixed from the offline dataset and the buffer.

Both have `Dataset.sample`'s signature, so an agent's `update_n` trains on either. Rewards enter
the buffer with the offline dataset's reward transform (`DatasetInfo.reward_scale` /
`reward_shift`), so online and offline rewards agree.
"""

import functools

import flax.struct as struct
import jax
import jax.numpy as jnp
import numpy as np

from dataset import Dataset, DatasetError


class ReplayBuffer(struct.PyTreeNode):
    """A fixed-capacity ring buffer of transitions on the device.

    `data` holds `capacity` rows (a `Dataset`); rows [0, size) are valid. `insert` writes a
    chunk of raw environment transitions at `cursor` with wrap-around, applying the buffer's
    reward transform (the dataset's (scale, shift), so online and offline rewards agree) and
    deriving `masks = 1 - terminated` (a time-limit truncation keeps mask 1) and
    `dones = terminated | truncated`. `sample` has the same signature as `Dataset.sample`, so
    agents train on either.
    """

    data: Dataset
    size: jax.Array  # int32 scalar: number of valid rows
    cursor: jax.Array  # int32 scalar: the next row to write
    reward_scale: jax.Array
    reward_shift: jax.Array

    @property
    def capacity(self) -> int:
        return self.data.size

    @classmethod
    def create(cls, capacity: int, obs_dim: int, action_dim: int, reward_scale: float = 1.0,
               reward_shift: float = 0.0) -> "ReplayBuffer":
        zeros = lambda *shape: jnp.zeros(shape, jnp.float32)  # noqa: E731
        data = Dataset(
            observations=zeros(capacity, obs_dim), actions=zeros(capacity, action_dim),
            rewards=zeros(capacity), masks=zeros(capacity), dones=zeros(capacity),
            next_observations=zeros(capacity, obs_dim),
        )
        return cls(data=data, size=jnp.int32(0), cursor=jnp.int32(0),
                   reward_scale=jnp.float32(reward_scale), reward_shift=jnp.float32(reward_shift))

    @classmethod
    def from_dataset(cls, dataset: Dataset, capacity: int, reward_scale: float = 1.0,
                     reward_shift: float = 0.0) -> "ReplayBuffer":
        """A buffer of `capacity` rows seeded with every row of an (already preprocessed)
        offline dataset; online inserts go after it and overwrite it only once it is full."""
        if dataset.size > capacity:
            raise DatasetError(f"the offline dataset ({dataset.size} transitions) does not fit a replay "
                               f"buffer of {capacity}; raise config.buffer_size")
        buffer = cls.create(capacity, dataset.observations.shape[1], dataset.actions.shape[1], reward_scale, reward_shift)
        data = jax.tree.map(lambda buf, x: buf.at[: dataset.size].set(x), buffer.data, dataset)
        return buffer.replace(data=data, size=jnp.int32(dataset.size), cursor=jnp.int32(dataset.size % capacity))

    @functools.partial(jax.jit, donate_argnums=0)
    def insert(self, observations, actions, rewards, terminated, truncated, next_observations) -> "ReplayBuffer":
        """Append n raw transitions (arrays with a leading axis of n); returns the new buffer.

        Compiled once per chunk length n; the buffer is donated, so the write is in place.
        """
        n = rewards.shape[0]
        rows = (self.cursor + jnp.arange(n)) % self.capacity
        terminated = jnp.asarray(terminated, jnp.float32)
        ends = jnp.maximum(terminated, jnp.asarray(truncated, jnp.float32))
        new_rows = Dataset(
            observations=observations, actions=actions,
            rewards=rewards * self.reward_scale + self.reward_shift,
            masks=1.0 - terminated, dones=ends, next_observations=next_observations,
        )
        data = jax.tree.map(lambda buf, x: buf.at[rows].set(jnp.asarray(x, jnp.float32).reshape((n,) + buf.shape[1:])),
                            self.data, new_rows)
        return self.replace(data=data, size=jnp.minimum(self.size + n, self.capacity),
                            cursor=(self.cursor + n) % self.capacity)

    def sample(self, key: jax.Array, batch_size: int) -> Dataset:
        """`batch_size` valid rows drawn uniformly with replacement; jit-able."""
        idx = jax.random.randint(key, (batch_size,), 0, jnp.maximum(self.size, 1))
        return jax.tree.map(lambda x: x[idx], self.data)

    def valid(self) -> Dataset:
        """The valid rows in insertion order (host-side helper; not for use under jit)."""
        size, cursor = int(self.size), int(self.cursor)
        order = np.arange(size) if size < self.capacity else (cursor + np.arange(size)) % self.capacity
        return jax.tree.map(lambda x: x[order], self.data)


class MixedData(struct.PyTreeNode):
    """Batches drawn half from the offline dataset and half from the online buffer (the
    IDQL / RLPD recipe); same `sample` signature as `Dataset`."""

    offline: Dataset
    online: ReplayBuffer

    def sample(self, key: jax.Array, batch_size: int) -> Dataset:
        offline_key, online_key = jax.random.split(key)
        half = batch_size // 2
        a = self.offline.sample(offline_key, half)
        b = self.online.sample(online_key, batch_size - half)
        return jax.tree.map(lambda x, y: jnp.concatenate([x, y]), a, b)
