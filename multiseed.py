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
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

SEED_AXIS = "seeds"


def make_mesh(num_seeds: int, num_devices: int = 0) -> Mesh:
    """A 1-D mesh over the devices that share the seeds.

    `num_devices` 0 picks the most devices that divide `num_seeds` evenly; an explicit count
    must divide it and be available.
    """
    devices = jax.devices()
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
    sharding = replicated(mesh)
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)
    host = jax.tree.map(np.asarray, tree)  # every host loaded the same data
    return jax.tree.map(lambda x: jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx]), host)


def create_agents(create: Callable[[jax.Array], Any], seeds: list[int], mesh: Mesh) -> Any:
    """`create(key)` for each seed's key, stacked on a leading axis sharded over the mesh."""
    keys = jnp.stack([jax.random.key(s) for s in seeds])
    # Not under jit: jit(vmap(create)) of the nn.vmap critic ensemble hangs XLA's CPU runtime
    # (jax 0.10.2) for 4+ seeds at width 256. Creation runs once; the eager vmap is enough.
    agents = jax.vmap(create)(keys)
    return shard_seeds(agents, mesh)


@functools.lru_cache(maxsize=None)
def compiled_update_n(mesh: Mesh, num_steps: int, batch_size: int) -> Callable:
    """The jitted, donating `update_n` for agents sharded over `mesh`; outputs keep the seed
    sharding, so feeding them back never recompiles."""

    def run(agents, data):
        return jax.vmap(lambda agent: agent._update_n(data, num_steps, batch_size))(agents)

    return jax.jit(run, out_shardings=seed_sharding(mesh), donate_argnums=0)


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
def compiled_update_n_online(mesh: Mesh, num_steps: int, batch_size: int, mix_offline: bool) -> Callable:
    """Like `compiled_update_n`, but each seed samples from its own replay buffer, or half from
    its buffer and half from the shared offline dataset when `mix_offline`."""
    from dataset import MixedData

    def run(agents, buffers, offline):
        def one(agent, buffer):
            source = MixedData(offline=offline, online=buffer) if mix_offline else buffer
            return agent._update_n(source, num_steps, batch_size)

        return jax.vmap(one)(agents, buffers)

    return jax.jit(run, out_shardings=seed_sharding(mesh), donate_argnums=0)


def update_n_online(agents, buffers, offline, num_steps: int, batch_size: int, mix_offline: bool):
    mesh = jax.tree.leaves(agents)[0].sharding.mesh
    return compiled_update_n_online(mesh, num_steps, batch_size, mix_offline)(agents, buffers, offline)


@functools.partial(jax.jit, donate_argnums=0)
def insert(buffers: Any, *rows: jax.Array) -> Any:
    """Append (num_seeds, n, ...) transitions, seed i's rows to seed i's buffer (donated)."""
    return jax.vmap(lambda buffer, *r: buffer._insert(*r))(buffers, *rows)


def shard_seeds(tree: Any, mesh: Mesh) -> Any:
    """Place a pytree with a leading seed axis (agents, buffers) on the seed sharding."""
    sharding = seed_sharding(mesh)
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)
    host = jax.tree.map(np.asarray, tree)  # every host built the same full stack
    return jax.tree.map(lambda x: jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx]), host)


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
        from jax.experimental import multihost_utils

        return multihost_utils.process_allgather(tree, tiled=True)
    return jax.device_get(tree)


def num_local_cpu_devices(num_seeds: int) -> int:
    """How many host devices to ask XLA for on a CPU-only machine: one per core, at most one
    per seed (one core per device beats one device splitting each small matmul over cores)."""
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, math.gcd(num_seeds, cores) if num_seeds > 1 else 1)
