"""Many seeds in one process: agents stacked on a leading seed axis, sharded over devices.

An agent is a pytree, so N independent agents are one pytree whose leaves have a leading axis
of N (made by `jax.vmap` over N keys), and training all of them is `jax.vmap` of `_update_n`:
one compiled program, one dispatch per call, one shared copy of the dataset. With several
devices the seed axis is split over a `jax.sharding.Mesh` ("seeds" axis) and the dataset is
replicated; the seeds never exchange data, so XLA runs each device's share independently.
Across hosts, the same code runs under `jax.distributed` on the global mesh.

Seed i of a run with `--seed=s --num_seeds=N` is the run `--seed=s+i` of a single-seed run:
its agent is created from `seed_streams(s + i)["agent"]` exactly as that run's is.
"""

import functools
import math
import os
from typing import Any, Callable

import flax.struct as struct
import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import io_callback, multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from replay_buffer import MixedData

SEED_AXIS = "seeds"


def make_mesh(num_seeds: int, num_devices: int = 0) -> Mesh:
    """A 1-D mesh over the devices that share the seeds.

    `num_devices` 0 picks the most devices that divide `num_seeds` evenly (under jax.distributed:
    all devices of all processes, so that every process takes part); an explicit count must
    divide it and be available.
    """
    devices = jax.devices()
    if not num_devices and jax.process_count() > 1:
        num_devices = len(devices)
    if num_devices:
        if num_devices > len(devices):
            raise ValueError(f"num_devices={num_devices}, but only {len(devices)} device(s) are visible")
        if num_seeds % num_devices:
            raise ValueError(f"num_seeds={num_seeds} is not a multiple of num_devices={num_devices}")
    else:
        num_devices = max(d for d in range(1, len(devices) + 1) if num_seeds % d == 0)
    return Mesh(np.asarray(devices[:num_devices]), (SEED_AXIS,))


def seed_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(SEED_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Put a full copy of `tree` (e.g. the dataset) on every device of the mesh."""
    return _place(tree, replicated(mesh))


# Every random stream of a seed, derived from it here and nowhere else, each under its own name.
# One scheme only: in JAX split(k, n)[i] equals fold_in(k, i), so a key must not be both split
# and folded with small integers (that made the online acting stream equal the evaluation one).
STREAMS = ("agent", "evaluation", "acting", "env_resets")


def seed_streams(seed: int) -> dict[str, jax.Array]:
    """{name: key} for seed `seed`: "agent" (the agent's init and its training draws),
    "evaluation" (evaluation episodes and their actions), "acting" (online actions) and
    "env_resets" (online episode seeds); the same whether the seed trains alone or with others."""
    return dict(zip(STREAMS, jax.random.split(jax.random.key(seed), len(STREAMS))))


def create_agents(create: Callable[[jax.Array], Any], seeds: list[int], mesh: Mesh) -> Any:
    """`create(key)` for each seed's agent key, stacked on a leading axis sharded over the mesh."""
    keys = jnp.stack([seed_streams(s)["agent"] for s in seeds])
    # Not under jit: jit(vmap(create)) of the nn.vmap critic ensemble hangs XLA's CPU runtime
    # (jax 0.10.2) for 4+ seeds at width 256. Creation runs once; the eager vmap is enough.
    agents = jax.vmap(create)(keys)
    return shard_seeds(agents, mesh)


def _each_seed(fn: Callable, *seeded) -> Any:
    """`fn` for each of a device's seeds (arguments with a leading seed axis): a vmap, or for
    one seed the plain single-agent program (on a CPU a vmap over an axis of length 1 costs
    about 10%: batched matmuls)."""
    if jax.tree.leaves(seeded[0])[0].shape[0] == 1:
        out = fn(*(jax.tree.map(lambda x: x[0], t) for t in seeded))
        return jax.tree.map(lambda x: x[None], out)
    return jax.vmap(fn)(*seeded)


def _per_seed(fn: Callable, mesh: Mesh, num_seeded: int, num_shared: int, donate: tuple = (0,)) -> Callable:
    """jit of `fn(*seeded, *shared)` for every seed: the first `num_seeded` arguments carry the
    seed axis (the first is the agents; `donate` the donated ones), the rest are shared by all seeds.

    Each device runs its own seeds (shard_map: no cross-device work; `_each_seed` within).
    """

    def local(*args):
        seeded, shared = args[:num_seeded], args[num_seeded:]
        return _each_seed(lambda *s: fn(*s, *shared), *seeded)

    specs = (P(SEED_AXIS),) * num_seeded + (P(),) * num_shared
    # Explicit out_shardings: on a mesh of one device the outputs would otherwise come back
    # as P() and the next call, fed them, would compile again.
    return jax.jit(jax.shard_map(local, mesh=mesh, in_specs=specs, out_specs=P(SEED_AXIS), check_vma=False),
                   out_shardings=seed_sharding(mesh), donate_argnums=donate)


@functools.lru_cache(maxsize=None)
def compiled_update_n(mesh: Mesh, num_steps: int, batch_size: int) -> Callable:
    """The jitted, donating `update_n` for agents sharded over `mesh`; outputs keep the seed
    sharding, so feeding them back never recompiles."""
    return _per_seed(lambda agent, data: agent.update_n(data, num_steps, batch_size), mesh, 1, 1)


def update_n(agents: Any, data: Any, num_steps: int, batch_size: int) -> tuple[Any, dict]:
    """`agent.update_n` for every seed at once: (agents, metrics), both with a seed axis.

    `agents` come from `create_agents` (their sharding names the mesh); `data` is shared.
    """
    mesh = jax.tree.leaves(agents)[0].sharding.mesh
    return compiled_update_n(mesh, num_steps, batch_size)(agents, data)


@jax.jit
def sample_actions(agents: Any, observations: jax.Array, keys: jax.Array, temperature: float = 0.0) -> jax.Array:
    """Actions for observations (num_seeds, n, obs_dim), each seed acting with its own agent
    and its own key (`keys` has the seed axis)."""
    return jax.vmap(lambda agent, obs, key: agent.sample_actions(obs, key, temperature))(agents, observations, keys)


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
            agents, metrics = _each_seed(lambda a, b: update(a, b, offline), agents, buffers.replace(size=size))
            # The row is written in place only once the update's batch gathers have read the
            # buffer. XLA sees that order through data alone: without this (exact, +0) dependency
            # of every column of the row on the update it copies the whole buffer (2M rows, ~0.5 s)
            # every env step.
            after = jnp.broadcast_to(0.0 * jnp.nan_to_num(sum(jax.tree.leaves(metrics), started)), (n,))
            next_obs, reward, terminated, truncated, last_obs = io_callback(host_step.finish, shapes, seed_ids, after)
            row = tuple(x + after.reshape((n,) + (1,) * (x.ndim - 1))
                        for x in (obs, actions, reward, terminated, truncated, last_obs))
            buffers, stats, actions = _each_seed(lambda *s: store_and_act(*s, index), agents, buffers, stats,
                                                 act_keys, row, next_obs)
            return agents, buffers, stats, next_obs, actions, metrics

        # The loop carries the last step's metrics, zeros before the first (their shapes: the update's).
        metrics = jax.eval_shape(lambda a, b: _each_seed(lambda x, y: update(x, y, offline), a, b)[1], agents, buffers)
        carry = (agents, buffers, stats, obs, actions, jax.tree.map(lambda m: jnp.zeros(m.shape, m.dtype), metrics))
        return jax.lax.fori_loop(start + 1, end + 1, env_step, carry)

    specs = (P(SEED_AXIS),) * 7 + (P(),) * 3
    return jax.jit(jax.shard_map(local, mesh=mesh, in_specs=specs, out_specs=P(SEED_AXIS), check_vma=False),
                   out_shardings=seed_sharding(mesh), donate_argnums=(0, 1, 2))


def shard_seeds(tree: Any, mesh: Mesh) -> Any:
    """Place a pytree with a leading seed axis (agents, buffers) on the seed sharding."""
    return _place(tree, seed_sharding(mesh))


def _place(tree: Any, sharding: NamedSharding) -> Any:
    """device_put onto a sharding; under jax.distributed every process holds the same full
    values and contributes the shards of its own devices."""
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)

    def one(x):
        if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):  # typed keys: place the raw bits, rewrap
            bits = one(jax.random.key_data(x))
            return jax.jit(functools.partial(jax.random.wrap_key_data, impl=jax.random.key_impl(x)),
                           out_shardings=sharding)(bits)
        host = np.asarray(x)
        return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])

    return jax.tree.map(one, tree)


def stack(agents: list[Any]) -> Any:
    """Single agents -> one stacked agent pytree (e.g. a template to load `agent.msgpack` into)."""
    return jax.tree.map(lambda *xs: jnp.stack(xs), *agents)


@jax.jit
def all_finite(tree: Any) -> jax.Array:
    """True when every float leaf of `tree` is finite (one reduction on the device)."""
    leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.floating)]
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


def unstack(agents: Any, index: int) -> Any:
    """Seed `index` of stacked agents, as a single agent."""
    return jax.tree.map(lambda x: x[index], agents)


def fetch(tree: Any) -> Any:
    """Device -> host NumPy, gathering the seed axis from all hosts under jax.distributed."""
    if jax.process_count() > 1:
        def gather(x):
            if not isinstance(x, jax.Array) or x.is_fully_addressable:
                return jax.device_get(x)
            if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):  # typed keys: gather the raw bits
                bits = multihost_utils.process_allgather(jax.random.key_data(x), tiled=True)
                return jax.random.wrap_key_data(bits, impl=jax.random.key_impl(x))
            return multihost_utils.process_allgather(x, tiled=True)

        return jax.tree.map(gather, tree)
    return jax.device_get(tree)


def num_local_cpu_devices(num_seeds: int) -> int:
    """How many host devices to ask XLA for on a CPU-only machine: one per core, at most one
    per seed (one core per device beats one device splitting each small matmul over cores)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, math.gcd(num_seeds, cores) if num_seeds > 1 else 1)
