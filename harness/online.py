"""The pieces of fine-tuning's online phase (train_finetune.py runs the loop): the seeds' envs on
the host (`HostEnvs`), their state on the device (`OnlineState`: replay buffers, episode
statistics, next actions), and the two compiled calls of an env step, `update` and `store_and_act`.

One env step, for every seed at once, as the original IQL code and rlpd run it:

    agents, metrics = update(agents, state.buffers, offline)   # utd updates; dispatched, not awaited
    rows = envs.step(host(state.actions))                      # the host steps the envs meanwhile
    state = store_and_act(state, agents, act_keys, rows, env_step)

JAX returns from `update` before the device has finished it, so the envs step while the
seeds train. `store_and_act` donates the buffers and writes the new row in place: the buffers
are read by `update` and written by `store_and_act`, never both in one program, so XLA never
needs to copy them (tests/test_finetune.py checks the compiled aliasing).
"""

import functools
from typing import Callable, NamedTuple

import flax.struct as struct
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from harness import multiseed
from replay_buffer import MixedData, ReplayBuffer

RECENT = 10  # online returns averaged in train.csv's online_return


class OnlineStats(struct.PyTreeNode):
    """Per-seed episode bookkeeping of the online phase, kept on the device with the seeds
    (so every process sees every seed's under jax.distributed): the running episode's return,
    the finished episodes' count and the last `recent.shape[-1]` returns (NaN until filled)."""

    episode_return: jax.Array
    episode_count: jax.Array
    recent: jax.Array

    @classmethod
    def create(cls, episode_count, recent) -> "OnlineStats":
        count = jnp.asarray(episode_count, jnp.int32)
        return cls(episode_return=jnp.zeros(count.shape, jnp.float32), episode_count=count,
                   recent=jnp.asarray(recent, jnp.float32))

    def record(self, reward, ended) -> "OnlineStats":
        total = self.episode_return + reward
        shifted = jnp.concatenate([self.recent[1:], total[None]])
        ended = ended > 0
        return OnlineStats(episode_return=jnp.where(ended, 0.0, total), episode_count=self.episode_count + ended,
                           recent=jnp.where(ended, shifted, self.recent))


class OnlineState(struct.PyTreeNode):
    """Every seed's online state on the device (a leading seed axis): its replay buffer, its
    episode statistics and the action it takes next. A checkpoint saves it whole."""

    buffers: ReplayBuffer
    stats: OnlineStats
    actions: jax.Array


class StepRows(NamedTuple):
    """One env step of every seed of this process (`HostEnvs.step`)."""

    obs: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    last_obs: np.ndarray  # the s' to store (the ended episode's last observation at a reset)
    next_obs: np.ndarray  # the observation to act on next


@functools.lru_cache(maxsize=None)
def compiled_update(mesh: Mesh, num_updates: int, batch_size: int, mix_offline: bool) -> Callable:
    """`update(agents, buffers, offline) -> (agents, metrics)`: `num_updates` updates of every
    seed on its replay buffer (with `mix_offline`, batches half from the offline dataset); the
    agents are donated, the buffers only read."""

    def update(agent, buffer, offline):
        source = MixedData(offline=offline, online=buffer) if mix_offline else buffer
        return agent.update_n(source, num_updates, batch_size)

    return multiseed.per_seed(update, mesh, num_seeded=2, num_shared=1, donate=(0,))


def act(agent, key, obs, index, temperature):
    """One seed's action for its observation, drawn with its acting key folded with `index`
    (the number of env steps taken so far)."""
    return agent.sample_actions(obs[None], jax.random.fold_in(key, index), temperature)[0]


@functools.lru_cache(maxsize=None)
def compiled_act(mesh: Mesh, temperature: float) -> Callable:
    """`act(agents, act_keys, obs, index) -> actions` for every seed."""
    return multiseed.per_seed(lambda *a: act(*a, temperature), mesh, num_seeded=3, num_shared=1, donate=())


@functools.lru_cache(maxsize=None)
def compiled_store_and_act(mesh: Mesh, temperature: float) -> Callable:
    """`store_and_act(state, agents, act_keys, rows, index) -> state`: each seed stores its
    transition (rows.obs, state.actions, reward, terminated, truncated, rows.last_obs), records
    the reward in its episode statistics, and draws the action for `rows.next_obs` (`act`). The
    state is donated: the buffer write is in place."""

    def store_and_act(state, agent, key, rows, index):
        step = (rows.obs, state.actions, rows.rewards, rows.terminated, rows.truncated, rows.last_obs)
        buffers = state.buffers.insert(*(x[None] for x in step))
        stats = state.stats.record(rows.rewards, jnp.maximum(rows.terminated, rows.truncated))
        return OnlineState(buffers, stats, act(agent, key, rows.next_obs, index, temperature))

    return multiseed.per_seed(store_and_act, mesh, num_seeded=4, num_shared=1, donate=(0,))


class HostEnvs:
    """One online env per seed of this process, on the host; `obs` holds their current
    observations. An env whose episode ends resets itself at once, as gymnasium's SAME_STEP
    autoreset: `next_obs` is then the next episode's first observation and `last_obs` the ended
    episode's final one (the s' to store)."""

    def __init__(self, make_env, reset_seeds: list[int]):
        self.envs = [make_env() for _ in reset_seeds]
        self.obs = np.stack([env.reset(seed=s)[0] for env, s in zip(self.envs, reset_seeds)]).astype(np.float32)

    def step(self, actions: np.ndarray) -> StepRows:
        """Step env i with actions[i]; the rows of the step, and `obs` moves on to `next_obs`."""
        n = len(self.envs)
        next_obs, last_obs = np.empty((2, n, self.obs.shape[1]), np.float32)
        rewards, terminated, truncated = np.zeros((3, n), np.float32)
        for k, (env, action) in enumerate(zip(self.envs, actions)):
            obs, rewards[k], terminated[k], truncated[k], _ = env.step(action)
            last_obs[k] = obs
            next_obs[k] = env.reset()[0] if terminated[k] or truncated[k] else obs
        rows = StepRows(self.obs, rewards, terminated, truncated, last_obs, next_obs)
        self.obs = next_obs
        return rows

    def close(self) -> None:
        for env in self.envs:
            env.close()
