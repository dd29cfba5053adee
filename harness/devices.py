"""Before JAX's backend starts: one host device per core on a CPU-only machine for several
seeds, and `jax.distributed` for runs over several processes (the scripts' --distributed)."""

import math
import os

import jax
import numpy as np
from jax.experimental import multihost_utils

from harness import cli


def num_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def num_local_cpu_devices(num_seeds: int) -> int:
    """How many host devices to ask XLA for on a CPU-only machine: one per core, at most one
    per seed (one core per device beats one device splitting each small matmul over cores)."""
    return max(1, math.gcd(num_seeds, num_cores()) if num_seeds > 1 else 1)


def start_jax(num_seeds: int, distributed: bool, num_points: int = 1) -> None:
    """Before JAX's backend starts: one host device per core on a CPU for several members
    (seeds x sweep points), and `jax.distributed.initialize()` for --distributed."""
    if num_seeds < 1:
        raise cli.UserError(f"--num_seeds must be >= 1, got {num_seeds}")
    request_cpu_devices(num_seeds * num_points)
    init_distributed(distributed)


def init_distributed(enabled: bool) -> None:
    """`jax.distributed.initialize()` for --distributed. On a cluster JAX finds the processes
    itself (SLURM, Open MPI, Kubernetes, Cloud TPU); elsewhere (e.g. several processes on one
    machine) set JAX_COORDINATOR_ADDRESS=host:port, JAX_NUM_PROCESSES and JAX_PROCESS_ID."""
    if not enabled:
        return
    num, pid = os.environ.get("JAX_NUM_PROCESSES"), os.environ.get("JAX_PROCESS_ID")
    if (num is None) != (pid is None):
        raise cli.UserError("set both JAX_NUM_PROCESSES and JAX_PROCESS_ID, or neither (cluster auto-detection)")
    kwargs = {} if num is None else {"num_processes": int(num), "process_id": int(pid)}
    jax.distributed.initialize(**kwargs)
    # One collective now, while the processes stand at the same point: on CPUs it sets up the
    # cross-process (gloo) context, whose setup times out after 30 s if one process reaches its
    # first collective that much later than another (a slower compile, an evaluation).
    multihost_utils.process_allgather(np.zeros(1, np.float32))


def request_cpu_devices(num_seeds: int) -> None:
    """On a CPU-only machine, ask XLA for one host device per core so seeds (members) train
    side by side; must run before JAX's backend starts (no effect after, nor on GPU/TPU devices)."""
    if num_seeds > 1 and "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
        count = num_local_cpu_devices(num_seeds)
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={count}"
