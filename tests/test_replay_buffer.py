"""The device replay buffer: wrap-around, reward transform, masks and dones, sampling."""

import jax
import jax.numpy as jnp
import numpy as np

from replay_buffer import ReplayBuffer


def rows(start, n, terminated=None, truncated=None):
    obs = np.arange(start, start + n, dtype=np.float32)[:, None] * np.ones((1, 2), np.float32)
    return (obs, np.full((n, 1), 0.5, np.float32), np.arange(start, start + n, dtype=np.float32),
            np.zeros(n) if terminated is None else terminated, np.zeros(n) if truncated is None else truncated,
            obs + 1)


def test_insert_wraps_and_keeps_order():
    buffer = ReplayBuffer.create(capacity=5, obs_dim=2, action_dim=1)
    buffer = buffer.insert(*rows(0, 3))
    assert int(buffer.size) == 3 and int(buffer.cursor) == 3
    buffer = buffer.insert(*rows(3, 4))  # rows 3, 4 fill the end; 5, 6 overwrite rows 0, 1
    assert int(buffer.size) == 5 and int(buffer.cursor) == 2
    np.testing.assert_array_equal(buffer.data.observations[:, 0], [5, 6, 2, 3, 4])
    np.testing.assert_array_equal(buffer.valid().observations[:, 0], [2, 3, 4, 5, 6])


def test_offline_rows_stay_until_overwritten_and_rewards_are_transformed():
    buffer = ReplayBuffer.create(capacity=6, obs_dim=2, action_dim=1, reward_scale=2.0, reward_shift=-1.0)
    buffer = buffer.insert(*rows(0, 4))
    np.testing.assert_allclose(buffer.data.rewards[:4], 2.0 * np.arange(4) - 1.0)
    buffer = buffer.insert(*rows(10, 3))  # overwrites only row 0
    np.testing.assert_array_equal(buffer.data.observations[:, 0], [12, 1, 2, 3, 10, 11])


def test_masks_and_dones_for_terminated_and_truncated():
    buffer = ReplayBuffer.create(capacity=4, obs_dim=2, action_dim=1)
    buffer = buffer.insert(*rows(0, 3, terminated=np.array([0, 1, 0]), truncated=np.array([0, 0, 1])))
    np.testing.assert_array_equal(buffer.data.masks[:3], [1, 0, 1])  # truncation still bootstraps
    np.testing.assert_array_equal(buffer.data.dones[:3], [0, 1, 1])  # both end the episode


def test_sample_stays_within_valid_rows():
    buffer = ReplayBuffer.create(capacity=100, obs_dim=2, action_dim=1).insert(*rows(1, 3))
    batch = jax.jit(lambda b, k: b.sample(k, 500))(buffer, jax.random.key(0))
    assert set(np.asarray(batch.observations[:, 0]).tolist()) == {1.0, 2.0, 3.0}


def test_insert_compiles_once_per_chunk_length():
    buffer = ReplayBuffer.create(capacity=50, obs_dim=2, action_dim=1)
    before = ReplayBuffer.insert._cache_size()
    for i in range(10):
        buffer = buffer.insert(*rows(i, 1))
    assert ReplayBuffer.insert._cache_size() == before + 1
    assert int(buffer.size) == 10 and float(jnp.sum(buffer.data.observations[:10, 0])) == 45.0
