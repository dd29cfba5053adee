"""Many seeds in one process: agents stacked on a leading seed axis, sharded over devices.

An agent is a pytree, so N independent agents are one pytree whose leaves have a leading axis
of N (made by `jax.vmap` over N keys), and training all of them is `jax.vmap` of `update_n`:
one compiled program, one dispatch per call, one shared copy of the dataset. With several
devices the seed axis is split over a `jax.sharding.Mesh` ("seeds" axis) and the dataset is
replicated; the seeds never exchange data, so XLA runs each device's share independently.
Across hosts, the same code runs under `jax.distributed` on the global mesh.

Seed i of a run with `--seed=s --num_seeds=N` is the run `--seed=s+i` of a single-seed run:
its agent is created from `seed_streams(s + i)["agent"]` exactly as that run's is.
"""

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from harness import cli

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


def run_mesh(num_seeds: int, num_devices: int = 0) -> Mesh:
    """`make_mesh` for a run's flags: a bad --num_devices is the user's error."""
    try:
        return make_mesh(num_seeds, num_devices)
    except ValueError as e:
        raise cli.UserError(str(e)) from e


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
    # One compiled `create` called per seed (the seeds share its shapes), then stacked. Not
    # jit(vmap(create)): with the nn.vmap critic ensemble it hangs XLA's CPU runtime for 4+ seeds
    # at width 256; and an eager vmap compiles each op apart (90 s of 145 s in the tiny campaign).
    make = jax.jit(create)
    agents = [make(seed_streams(s)["agent"]) for s in seeds]
    return shard_seeds(jax.tree.map(lambda *leaves: jnp.stack(leaves), *agents), mesh)


def each_seed(fn: Callable, *seeded) -> Any:
    """`fn` for each of a device's seeds (arguments with a leading seed axis): a vmap, or for
    one seed the plain single-agent program (on a CPU a vmap over an axis of length 1 costs
    about 10%: batched matmuls)."""
    if jax.tree.leaves(seeded[0])[0].shape[0] == 1:
        out = fn(*(jax.tree.map(lambda x: x[0], t) for t in seeded))
        return jax.tree.map(lambda x: x[None], out)
    return jax.vmap(fn)(*seeded)


def per_seed(fn: Callable, mesh: Mesh, num_seeded: int, num_shared: int, donate: tuple = (0,)) -> Callable:
    """jit of `fn(*seeded, *shared)` for every seed: the first `num_seeded` arguments carry the
    seed axis (the first is the agents; `donate` the donated ones), the rest are shared by all seeds.

    Each device runs its own seeds (shard_map: no cross-device work; `each_seed` within).
    """

    def local(*args):
        seeded, shared = args[:num_seeded], args[num_seeded:]
        return each_seed(lambda *s: fn(*s, *shared), *seeded)

    specs = (P(SEED_AXIS),) * num_seeded + (P(),) * num_shared
    # Explicit out_shardings: on a mesh of one device the outputs would otherwise come back
    # as P() and the next call, fed them, would compile again.
    return jax.jit(jax.shard_map(local, mesh=mesh, in_specs=specs, out_specs=P(SEED_AXIS), check_vma=False),
                   out_shardings=seed_sharding(mesh), donate_argnums=donate)


@functools.lru_cache(maxsize=None)
def compiled_update_n(mesh: Mesh, num_steps: int, batch_size: int) -> Callable:
    """The jitted, donating `update_n` for agents sharded over `mesh`; outputs keep the seed
    sharding, so feeding them back never recompiles."""
    return per_seed(lambda agent, data: agent.update_n(data, num_steps, batch_size), mesh, 1, 1)


def update_n(agents: Any, data: Any, num_steps: int, batch_size: int) -> tuple[Any, dict]:
    """`agent.update_n` for every seed at once: (agents, metrics), both with a seed axis.

    `agents` come from `create_agents` (their sharding names the mesh); `data` is shared.
    """
    mesh = jax.tree.leaves(agents)[0].sharding.mesh
    return compiled_update_n(mesh, num_steps, batch_size)(agents, data)


@jax.jit
def sample_actions(agents: Any, observations: jax.Array, keys: jax.Array, temperature=None) -> jax.Array:
    """Actions for observations (num_seeds, n, obs_dim), each seed acting with its own agent
    and its own key (`keys` has the seed axis); without `temperature`, the evaluation action."""
    return jax.vmap(lambda agent, obs, key: agent.sample_actions(obs, key, temperature))(agents, observations, keys)


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


def local_seeds(mesh: Mesh, num_seeds: int) -> list[int]:
    """The indices of the seeds whose shards this process's devices hold (all of them but under
    jax.distributed), in order."""
    slices = seed_sharding(mesh).addressable_devices_indices_map((num_seeds,)).values()
    return sorted({i for (index,) in slices for i in range(*index.indices(num_seeds))})


def local_rows(x: jax.Array) -> np.ndarray:
    """This process's seeds' rows of a seed-sharded array, on the host, in `local_seeds` order."""
    if x.is_fully_addressable:
        return np.asarray(x)
    shards = sorted(x.addressable_shards, key=lambda s: s.index[0].start or 0)
    return np.concatenate([np.asarray(s.data) for s in shards])


def from_local_rows(tree: Any, mesh: Mesh) -> Any:
    """The inverse of `local_rows`: host arrays of this process's seeds -> seed-sharded arrays."""
    sharding = seed_sharding(mesh)
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), tree)


def stack(agents: list[Any]) -> Any:
    """Single agents -> one stacked agent pytree (e.g. a template to load `agent.msgpack` into)."""
    return jax.tree.map(lambda *xs: jnp.stack(xs), *agents)


@jax.jit
def all_finite(tree: Any) -> jax.Array:
    """True when every float leaf of `tree` is finite (one reduction on the device)."""
    leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.floating)]
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


@jax.jit
def finite_per_member(tree: Any) -> jax.Array:
    """(members,) True where every float leaf of that member (leading axis) is finite."""
    leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.floating)]
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x.reshape(x.shape[0], -1)), axis=1) for x in leaves]), axis=0)


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


# One key per seed folded with the same counter, in one compiled call.
fold_keys = jax.jit(jax.vmap(jax.random.fold_in, in_axes=(0, None)))
