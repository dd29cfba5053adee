"""The fused online design that train_finetune.py's plain loop replaced, kept only so that
tools/bench.py can time the two on the same run (docs/speed.md has the figures and the choice).

Env steps begin..end-1 of one seed run in one compiled call: each starts the env on a host
thread (io_callback), updates meanwhile, collects the env (io_callback), stores and acts.
"""

import concurrent.futures

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import io_callback
from jax.sharding import PartitionSpec as P

from harness import multiseed


def compiled_chunk(mesh, envs, obs_dim: int, config):
    """`chunk(agents, buffers, keys, obs, actions, begin, end)`: env steps begin..end-1 of one
    seed. The fake dependency (0 x metrics) orders the row's write after the update's gathers,
    or XLA copies the buffer."""
    worker, pending = concurrent.futures.ThreadPoolExecutor(1), []
    start = lambda actions: pending.append(worker.submit(envs.step, np.array(actions))) or np.float32(0)  # noqa: E731
    shapes = (jax.ShapeDtypeStruct((1, obs_dim), jnp.float32), *[jax.ShapeDtypeStruct((1,), jnp.float32)] * 3,
              jax.ShapeDtypeStruct((1, obs_dim), jnp.float32))

    def local(agents, buffers, keys, obs, actions, begin, end):
        key = keys[0]

        def env_step(index, carry):
            agent, buffer, obs, action, _ = carry
            started = io_callback(start, jax.ShapeDtypeStruct((), jnp.float32), action)
            started, size = jax.lax.optimization_barrier((started, buffer.size))
            agent, metrics = agent.update_n(buffer.replace(size=size), config.utd, config.batch_size)
            after = 0.0 * jnp.nan_to_num(sum(jax.tree.leaves(metrics), started))
            next_obs, *rest = io_callback(lambda _: pending.pop().result(), shapes, after)
            buffer = buffer.insert(*(x + after for x in (obs, action, *rest)))
            action = agent.sample_actions(next_obs, jax.random.fold_in(key, index), config.online_temperature)
            return agent, buffer, next_obs, action, after

        agent, buffer = multiseed.unstack(agents, 0), multiseed.unstack(buffers, 0)
        agent, buffer, obs, actions, _ = jax.lax.fori_loop(begin, end, env_step, (agent, buffer, obs, actions, 0.0))
        return jax.tree.map(lambda x: x[None], (agent, buffer)) + (obs, actions)

    return jax.jit(jax.shard_map(local, mesh=mesh, in_specs=(P(multiseed.SEED_AXIS),) * 5 + (P(),) * 2,
                                 out_specs=P(multiseed.SEED_AXIS), check_vma=False),
                   out_shardings=multiseed.seed_sharding(mesh), donate_argnums=(0, 1))
