"""Many seeds in one process: agents stacked on a leading seed axis, sharded over devices.

An agent is a pytree, so N independent agents are one pytree whose leaves have a leading axis
of N (made by `jax.vmap` over N keys), and training all of them is `jax.vmap` of `_update_n`:
one compiled program, one dispatch per call, one shared copy of the dataset. With several
devices the seed axis is split over a `jax.sharding.Mesh` ("seeds" axis) and the dataset is
replicated; the seeds never exchange data, so XLA runs each device's share independently.
Across hosts, the same code runs under `jax.distributed` on the global mesh.

Seed i of a run with `--seed=s --num_seeds=N` is the run `--seed=s+i` of a single-seed run:
its agent is created from `jax.random.key(s + i)` exactly as that run's is.
"""

import functools
import math
import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
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


def create_agents(create: Callable[[jax.Array], Any], seeds: list[int], mesh: Mesh) -> Any:
    """`create(key)` for each seed's key, stacked on a leading axis sharded over the mesh."""
    keys = jnp.stack([jax.random.key(s) for s in seeds])
    # Not under jit: jit(vmap(create)) of the nn.vmap critic ensemble hangs XLA's CPU runtime
    # (jax 0.10.2) for 4+ seeds at width 256. Creation runs once; the eager vmap is enough.
    agents = jax.vmap(create)(keys)
    return shard_seeds(agents, mesh)


def _per_seed(fn: Callable, mesh: Mesh, num_seeded: int, num_shared: int, donate: tuple = (0,)) -> Callable:
    """jit of `fn(*seeded, *shared)` for every seed: the first `num_seeded` arguments carry the
    seed axis (the first is the agents; `donate` the donated ones), the rest are shared by all seeds.

    Each device runs its own seeds (shard_map: no cross-device work). A device holding one
    seed runs the plain single-agent program: on a CPU a vmap over an axis of length 1 costs
    about 10% (batched matmuls), which is what one device per core is meant to win back.
    """

    def local(*args):
        seeded, shared = args[:num_seeded], args[num_seeded:]
        if jax.tree.leaves(seeded[0])[0].shape[0] == 1:
            out = fn(*(jax.tree.map(lambda x: x[0], t) for t in seeded), *shared)
            return jax.tree.map(lambda x: x[None], out)
        return jax.vmap(lambda *s: fn(*s, *shared))(*seeded)

    specs = (P(SEED_AXIS),) * num_seeded + (P(),) * num_shared
    # Explicit out_shardings: on a mesh of one device the outputs would otherwise come back
    # as P() and the next call, fed them, would compile again.
    return jax.jit(jax.shard_map(local, mesh=mesh, in_specs=specs, out_specs=P(SEED_AXIS), check_vma=False),
                   out_shardings=seed_sharding(mesh), donate_argnums=donate)


@functools.lru_cache(maxsize=None)
def compiled_update_n(mesh: Mesh, num_steps: int, batch_size: int) -> Callable:
    """The jitted, donating `update_n` for agents sharded over `mesh`; outputs keep the seed
    sharding, so feeding them back never recompiles."""
    return _per_seed(lambda agent, data: agent._update_n(data, num_steps, batch_size), mesh, 1, 1)


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


@functools.lru_cache(maxsize=None)
def compiled_online_step(mesh: Mesh, num_updates: int, batch_size: int, mix_offline: bool,
                         temperature: float) -> Callable:
    """One environment step of online fine-tuning in one compiled call, for every seed: insert
    the step's transition into the seed's replay buffer, run `num_updates` updates on it (or on
    MixedData with the offline dataset), and sample the action for the next observation with
    the updated policy (key: the seed's acting key folded with the env-step index). The agents
    and the buffers are donated, so the buffer write is in place."""
    def one(agent, buffer, act_key, obs, action, reward, terminated, truncated, next_obs, act_obs, offline, index):
        row = (obs, action, reward, terminated, truncated, next_obs)
        metrics = {}
        if num_updates:
            source = MixedData(offline=offline, online=buffer) if mix_offline else buffer
            agent, metrics = agent._update_n(source, num_updates, batch_size)
            # The row is written in place only once the update's batch gathers have read the
            # buffer. XLA sees that order through data alone: without this (exact, +0) dependency
            # of the row on the update it copies the whole buffer (2M rows, ~0.5 s) every env step.
            after = 0.0 * jnp.nan_to_num(sum(jax.tree.leaves(metrics)))
            row = tuple(x + after for x in row)
        buffer = buffer._insert(*(x[None] for x in row))
        actions = agent.sample_actions(act_obs[None], jax.random.fold_in(act_key, index), temperature)[0]
        return agent, buffer, actions, metrics

    return _per_seed(one, mesh, 10, 2, donate=(0, 1))


def online_step(agents, buffers, act_keys, transition, act_obs, offline, index: int, num_updates: int,
                batch_size: int, mix_offline: bool, temperature: float):
    """`compiled_online_step` for the seeds' (agents, buffers): `transition` is (obs, action,
    reward, terminated, truncated, next_obs) with a leading seed axis, `act_obs` the observations
    to act on next (the next episode's first one where an episode ended). Returns (agents,
    buffers, actions (num_seeds, act_dim) on the device, metrics)."""
    mesh = jax.tree.leaves(agents)[0].sharding.mesh
    step = compiled_online_step(mesh, num_updates, batch_size, mix_offline, float(temperature))
    return step(agents, buffers, act_keys, *transition, act_obs, offline, jnp.int32(index))


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
