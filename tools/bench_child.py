"""The measurements of tools/bench.py that need a process of their own: on a CPU the device
count is fixed when JAX starts, and runs side by side are separate processes.

    python -m tools.bench_child seeds N K    # N sharded seeds, K updates per call: prints RECORD {json}
    python -m tools.bench_child grid N K     # an N-point beta grid as one program: RECORD {json}
    python -m tools.bench_child alone K S    # one agent: READY <compile s>, waits for a line, times S s, DONE <updates>
"""

import json
import sys
import time

import jax

from harness import cli, multiseed, sweep
from tools import bench


def mesh_child(kind: str, members: int, k: int) -> None:
    """`members` seeds (kind "seeds") or bench_sweep's beta grid ("grid") on this process's
    devices; prints its RECORD."""
    data, create = bench.iql_setup()
    mesh = multiseed.make_mesh(members)
    grid = [("beta", [float(b) for b in range(1, members + 1)])] if kind == "grid" else []
    points = sweep.members(0, 1 if grid else members, grid)  # no grid: seeds 0..members-1
    agents = multiseed.shard_seeds(sweep.apply(multiseed.create_agents(create, points.seeds, mesh), points), mesh)
    compile_s, rate = bench.bench_update_n(agents, multiseed.replicate(data, mesh), k, 256)
    print("RECORD " + json.dumps({"rate": members * rate, "compile_s": compile_s, "devices": mesh.devices.size}))


def alone_child(k: int, window: float) -> None:
    """One agent's update_n in a loop for `window` seconds after the parent's go; prints the count."""
    data, create = bench.iql_setup()
    agent = [create(jax.random.key(0))]
    tic = time.perf_counter()
    for _ in range(2):
        agent[0], info = agent[0].update_n(data, k, 256)
        jax.block_until_ready(info)
    print(f"READY {time.perf_counter() - tic:.2f}", flush=True)
    sys.stdin.readline()
    count, end = 0, time.perf_counter() + window
    while time.perf_counter() < end:
        agent[0], info = agent[0].update_n(data, k, 256)
        jax.block_until_ready(info)
        count += k
    print(f"DONE {count}", flush=True)


def main(argv):
    kinds = ("seeds", "grid", "alone")
    if len(argv) != 4 or argv[1] not in kinds:
        raise cli.UserError(f"expected one of {', '.join(kinds)} and two numbers, got {argv[1:]}")
    kind, first, second = argv[1:]
    if kind == "alone":
        return alone_child(int(first), float(second))
    return mesh_child(kind, int(first), int(second))


if __name__ == "__main__":
    cli.run(main, bench.FLAGS)
