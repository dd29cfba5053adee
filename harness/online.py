"""The online phase's machinery (train_finetune.py runs the phase): the seeds' envs on the host
(`HostEnvs`), their episode statistics on the device (`OnlineStats`), and the compiled chunk of
env steps (`compiled_online_chunk`) that steps the envs through host callbacks while the seeds
update, so the replay buffers stay in place on the device (docs/speed.md has the measurements
and how the chunk orders its writes).
"""

import concurrent.futures
from typing import Any, Callable

import flax.struct as struct
import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import io_callback
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from harness import multiseed
from replay_buffer import MixedData

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


def compiled_online_chunk(mesh: Mesh, host_step: Any, obs_dim: int, num_updates: int, batch_size: int,
                          mix_offline: bool, temperature: float) -> Callable:
    """`chunk(agents, buffers, stats, act_keys, seed_ids, obs, actions, offline, start, end)`:
    env steps start+1 .. end of online fine-tuning, for every seed, in one compiled call. Every
    argument but `offline` and the two ints carries the seed axis (`seed_ids`: each seed's
    index, which `host_step` receives with its actions); it returns (agents, buffers, stats,
    obs, actions, the last step's metrics), the actions being those to take at env step end+1.
    Not cached here: the function holds `host_step`, so its caller keeps it for as long as the
    envs live (one compile per `num_updates`; start and end are traced).

    Each env step, inside a `lax.fori_loop` on the device: `host_step.start(seed_ids, actions)`
    (an `io_callback`: the envs stay Python objects on the host) begins stepping the seeds' envs
    on a host thread; meanwhile each seed runs `num_updates` updates on its replay buffer (or
    MixedData with the offline dataset); `host_step.finish(seed_ids, _)` then returns (next_obs,
    reward, terminated, truncated, last_obs), last_obs being the finished episode's final
    observation where one ended (next_obs is then the next episode's first); each seed stores the
    transition and samples its next action with the updated policy (key: the seed's acting key
    folded with the env-step index). One call per chunk instead of one per env step saves the
    call's dispatch and host<->device copies (tools/bench.py --parts=online). The agents, buffers
    and stats are donated, so the buffer write is in place.
    """

    def update(agent, buffer, offline):
        if not num_updates:
            return agent, {}
        source = MixedData(offline=offline, online=buffer) if mix_offline else buffer
        return agent.update_n(source, num_updates, batch_size)

    def store_and_act(agent, buffer, stats, act_key, row, act_obs, index):
        buffer = buffer.insert(*(x[None] for x in row))
        stats = stats.record(row[2], jnp.maximum(row[3], row[4]))
        actions = agent.sample_actions(act_obs[None], jax.random.fold_in(act_key, index), temperature)[0]
        return buffer, stats, actions

    def local(agents, buffers, stats, act_keys, seed_ids, obs, actions, offline, start, end):
        n = seed_ids.shape[0]
        shapes = (jax.ShapeDtypeStruct((n, obs_dim), jnp.float32), *[jax.ShapeDtypeStruct((n,), jnp.float32)] * 3,
                  jax.ShapeDtypeStruct((n, obs_dim), jnp.float32))

        def env_step(index, carry):
            agents, buffers, stats, obs, actions, _ = carry
            # The host starts the env steps on a thread of its own and returns at once; the
            # updates run meanwhile (the barrier orders them after the start: their batches
            # are drawn with the buffer's size).
            started = io_callback(host_step.start, jax.ShapeDtypeStruct((), jnp.float32), seed_ids, actions)
            started, size = jax.lax.optimization_barrier((started, buffers.size))
            agents, metrics = multiseed.each_seed(lambda a, b: update(a, b, offline), agents, buffers.replace(size=size))
            # The row is written in place only once the update's batch gathers have read the
            # buffer. XLA sees that order through data alone: without this (exact, +0) dependency
            # of every column of the row on the update it copies the whole buffer (2M rows, ~0.5 s)
            # every env step.
            after = jnp.broadcast_to(0.0 * jnp.nan_to_num(sum(jax.tree.leaves(metrics), started)), (n,))
            next_obs, reward, terminated, truncated, last_obs = io_callback(host_step.finish, shapes, seed_ids, after)
            row = tuple(x + after.reshape((n,) + (1,) * (x.ndim - 1))
                        for x in (obs, actions, reward, terminated, truncated, last_obs))
            buffers, stats, actions = multiseed.each_seed(lambda *s: store_and_act(*s, index), agents, buffers, stats,
                                                 act_keys, row, next_obs)
            return agents, buffers, stats, next_obs, actions, metrics

        # The loop carries the last step's metrics, zeros before the first (their shapes: the update's).
        metrics = jax.eval_shape(lambda a, b: multiseed.each_seed(lambda x, y: update(x, y, offline), a, b)[1], agents, buffers)
        carry = (agents, buffers, stats, obs, actions, jax.tree.map(lambda m: jnp.zeros(m.shape, m.dtype), metrics))
        return jax.lax.fori_loop(start + 1, end + 1, env_step, carry)

    specs = (P(multiseed.SEED_AXIS),) * 7 + (P(),) * 3
    return jax.jit(jax.shard_map(local, mesh=mesh, in_specs=specs, out_specs=P(multiseed.SEED_AXIS), check_vma=False),
                   out_shardings=multiseed.seed_sharding(mesh), donate_argnums=(0, 1, 2))


class HostEnvs:
    """The seeds' online envs on the host, stepped from inside the compiled online chunk
    (`compiled_online_chunk`'s `host_step`). Env i is seed i's; an env whose episode ends
    resets itself at once, as gymnasium's SAME_STEP autoreset: `next_obs` is then the next
    episode's first observation and `last_obs` the ended episode's final one (the s' to store)."""

    def __init__(self, make_env, reset_seeds: list[int]):
        self.envs = [make_env() for _ in reset_seeds]
        self.worker, self.pending = concurrent.futures.ThreadPoolExecutor(1), {}
        self.first_obs = np.stack([env.reset(seed=s)[0] for env, s in zip(self.envs, reset_seeds)]).astype(np.float32)

    def __call__(self, seed_ids, actions):
        """Step seed_ids' envs with actions: (next_obs, rewards, terminated, truncated, last_obs)."""
        n = len(seed_ids)
        next_obs, last_obs = np.empty((2, n, self.first_obs.shape[1]), np.float32)
        rewards, terminated, truncated = np.zeros((3, n), np.float32)
        for k, (i, action) in enumerate(zip(np.asarray(seed_ids), np.asarray(actions))):
            env = self.envs[int(i)]
            obs, rewards[k], terminated[k], truncated[k], _ = env.step(action)
            last_obs[k] = obs
            next_obs[k] = env.reset()[0] if terminated[k] or truncated[k] else obs
        return next_obs, rewards, terminated, truncated, last_obs

    def start(self, seed_ids, actions):
        """Begin stepping seed_ids' envs on the host's worker thread; returns at once. (The
        arguments are copied: a callback's arrays need not outlive the call.)"""
        self.pending[tuple(np.asarray(seed_ids).tolist())] = self.worker.submit(self, np.array(seed_ids), np.array(actions))
        return np.float32(0.0)

    def finish(self, seed_ids, _after):
        """The results of the `start` for seed_ids (waits for them)."""
        return self.pending.pop(tuple(np.asarray(seed_ids).tolist())).result()

    def close(self) -> None:
        self.worker.shutdown()
        for env in self.envs:
            env.close()


def chunk_end(env_step: int, config) -> int:
    """The last env step of the chunk starting after `env_step`: at most `steps_per_call` steps,
    ending at every log, evaluation and checkpoint point and where training starts."""
    points = [config.log_interval, config.eval_interval, config.checkpoint_interval, config.steps_per_call]
    ends = [(env_step // k + 1) * k for k in points if k] + [config.online_steps]
    if env_step < config.start_training:
        ends.append(config.start_training)
    return min(ends)
