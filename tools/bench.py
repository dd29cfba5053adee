"""Speed benchmark: steady-state IQL updates/s for the designs and seed layouts in REFERENCE.md.

    python -m tools.bench --quick --json=bench.json      # a few minutes on a laptop CPU
    python -m tools.bench                                # longer timing windows, more repeats

Locomotion shapes (obs 11, act 3), batch 256, (256, 256) networks. Each configuration is
compiled first (compile time reported separately), then timed over several windows; the
median is reported. Configurations:

  host_1_per_call   the peers' design: NumPy sampling on the host, one `update` per jit call
  update_n          K fused updates per call under lax.scan, batches sampled on the device
  vmap              N seeds vmapped on one device (K updates per call)
  sharded           N seeds with the seed axis split over several devices (on a CPU-only
                    machine: one host device per core, in a subprocess with its own XLA_FLAGS)
  processes         CPU only: one single-seed process per core, pinned, timed side by side;
                    the most that one device per core can give on this machine

It also measures the FLOPs of one update (XLA's cost analysis) and the machine's matmul
throughput at these shapes, and prints the fraction of that ceiling each configuration reaches.
"""

import json
import os
import statistics
import subprocess
import sys
import time

import jax
import numpy as np
from absl import flags

import dataset as dataset_lib
from configs import iql_mujoco
from harness import cli, multiseed
from learner import IQLLearner

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FLAGS = flags.FlagValues()
flags.DEFINE_bool("quick", False, "Short timing windows (a few minutes in all).", flag_values=FLAGS)
flags.DEFINE_string("json", None, "Write the records to this JSON file.", flag_values=FLAGS)
flags.DEFINE_integer("sharded_devices", 0, "Devices for the sharded configurations (0: one per CPU core, "
                     "or all accelerators).", flag_values=FLAGS)
flags.DEFINE_string("child", None, "Internal: run one sharded configuration 'N,K' and print its record.",
                    flag_values=FLAGS)

OBS_DIM, ACT_DIM, BATCH, DATA_SIZE = 11, 3, 256, 100_000


def setup():
    rng = np.random.default_rng(0)
    arrays = dict(
        observations=rng.standard_normal((DATA_SIZE, OBS_DIM)).astype(np.float32),
        actions=rng.uniform(-1, 1, (DATA_SIZE, ACT_DIM)).astype(np.float32),
        rewards=rng.standard_normal(DATA_SIZE).astype(np.float32),
        terminals=(rng.random(DATA_SIZE) < 0.001).astype(np.float32),
        next_observations=rng.standard_normal((DATA_SIZE, OBS_DIM)).astype(np.float32),
    )
    data, _ = dataset_lib.from_arrays(**arrays)
    config = iql_mujoco.get_config()
    return data, arrays, config


def timed(fn, updates_per_call: int, windows: int, seconds: float) -> tuple[float, float]:
    """(compile seconds, median updates/s over `windows` windows of about `seconds` each)."""
    start = time.perf_counter()
    fn()
    compile_s = time.perf_counter() - start
    fn()  # one more warm call
    start = time.perf_counter()
    fn()
    per_call = max(time.perf_counter() - start, 1e-6)
    calls = max(1, int(seconds / per_call))
    rates = []
    for _ in range(windows):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        rates.append(calls * updates_per_call / (time.perf_counter() - start))
    return compile_s, statistics.median(rates)


def bench_host_baseline(data, arrays, config, windows, seconds) -> dict:
    """One jitted `update` per step on a batch sampled with NumPy on the host (the peers)."""
    agent = [IQLLearner.create(jax.random.key(0), arrays["observations"][0], arrays["actions"][0], config)]
    host = {k: np.asarray(getattr(data, k)) for k in ("observations", "actions", "rewards", "masks", "dones",
                                                       "next_observations")}
    rng = np.random.default_rng(0)  # the peers' design, kept here only as the baseline

    def step():
        idx = rng.integers(0, DATA_SIZE, BATCH)
        batch = dataset_lib.Dataset(**{k: v[idx] for k, v in host.items()})
        agent[0], info = agent[0].update(batch)
        jax.block_until_ready(info)

    compile_s, rate = timed(step, 1, windows, seconds)
    return {"design": "host_1_per_call", "K": 1, "num_seeds": 1, "devices": 1, "updates_per_s": rate,
            "compile_s": compile_s}


def bench_update_n(data, config, num_steps, num_seeds, windows, seconds, mesh=None) -> dict:
    mesh = mesh or multiseed.make_mesh(num_seeds, 1)
    create = lambda key: IQLLearner.create(key, data.observations[0], data.actions[0], config)  # noqa: E731
    data = multiseed.replicate(data, mesh)
    if num_seeds == 1 and mesh.devices.size == 1:
        state = [create(jax.random.key(0))]

        def call():
            state[0], info = state[0].update_n(data, num_steps, BATCH)
            jax.block_until_ready(info)
        design = "update_n"
    else:
        state = [multiseed.create_agents(create, list(range(num_seeds)), mesh)]

        def call():
            state[0], info = multiseed.update_n(state[0], data, num_steps, BATCH)
            jax.block_until_ready(info)
        design = "vmap" if mesh.devices.size == 1 else "sharded"

    compile_s, rate = timed(call, num_steps * num_seeds, windows, seconds)
    return {"design": design, "K": num_steps, "num_seeds": num_seeds, "devices": int(mesh.devices.size),
            "updates_per_s": rate, "compile_s": compile_s}


def update_flops(data, config) -> float:
    agent = IQLLearner.create(jax.random.key(0), data.observations[0], data.actions[0], config)
    batch = data.sample(jax.random.key(1), BATCH)
    analysis = IQLLearner.update.lower(agent, batch).compile().cost_analysis()
    analysis = analysis[0] if isinstance(analysis, (list, tuple)) else analysis
    return float(analysis["flops"])


def matmul_gflops(windows, seconds) -> float:
    """Throughput of dependent (256 x 256) @ (256 x 256) matmuls, the bulk of an update."""
    x = jax.random.normal(jax.random.key(0), (BATCH, 256))
    w = jax.random.normal(jax.random.key(1), (256, 256)) / 16.0
    reps = 200

    @jax.jit
    def chain(x):
        return jax.lax.fori_loop(0, reps, lambda _, y: y @ w, x)

    _, rate = timed(lambda: jax.block_until_ready(chain(x)), reps, windows, seconds)
    return rate * 2 * BATCH * 256 * 256 / 1e9


def run_child(spec: str) -> None:
    """Runs in a subprocess: 'N,K' with XLA_FLAGS giving several host devices, or 'N,K,core'
    pinned to one core (one of the independent processes of the `processes` bound)."""
    num_seeds, num_steps, *core = (int(x) for x in spec.split(","))
    if core:
        os.sched_setaffinity(0, {core[0]})
    data, _, config = setup()
    windows, seconds = (3, 2.0) if FLAGS.quick else (5, 5.0)
    mesh = multiseed.make_mesh(num_seeds)
    print("RECORD " + json.dumps(bench_update_n(data, config, num_steps, num_seeds, windows, seconds, mesh)))


def child_records(specs: list[str], xla_flags: str) -> list[dict]:
    """Run `--child=spec` subprocesses side by side; their records (failures reported)."""
    env = dict(os.environ, XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} {xla_flags}")
    procs = [subprocess.Popen([sys.executable, "-m", "tools.bench", f"--child={spec}"]
                              + (["--quick"] if FLAGS.quick else []), cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for spec in specs]
    records = []
    for spec, proc in zip(specs, procs):
        out, err = proc.communicate()
        found = [json.loads(line[len("RECORD "):]) for line in out.splitlines() if line.startswith("RECORD ")]
        records += found
        if not found:
            print(f"configuration {spec} failed:\n{err[-2000:]}", file=sys.stderr)
    return records


def sharded_record(num_seeds: int, num_steps: int, devices: int) -> dict | None:
    records = child_records([f"{num_seeds},{num_steps}"], f"--xla_force_host_platform_device_count={devices}")
    return records[0] if records else None


def processes_record(cores: int, num_steps: int) -> dict | None:
    """The bound for one device per core: `cores` independent single-seed processes, each
    pinned to its own core with single-threaded XLA, timed side by side; their sum."""
    records = child_records([f"1,{num_steps},{core}" for core in range(cores)],
                            "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    if len(records) != cores:
        return None
    return {"design": "processes", "K": num_steps, "num_seeds": cores, "devices": cores,
            "updates_per_s": sum(r["updates_per_s"] for r in records),
            "compile_s": max(r["compile_s"] for r in records)}


def report(records: list[dict], platform: str, cores: int, devices: int, flops: float, gflops: float,
           ceiling: float) -> None:
    """Print the table and the ratios against the targets; write --json."""
    for r in records:
        r.update(batch_size=BATCH, platform=platform, device_kind=jax.devices()[0].device_kind,
                 updates_per_s_per_seed=r["updates_per_s"] / r["num_seeds"],
                 # On a CPU the host devices share the cores the ceiling was measured on.
                 fraction_of_ceiling=r["updates_per_s"] / (ceiling * (1 if platform == "cpu" else r["devices"])))
    print("\n| design | K | seeds | devices | updates/s (all seeds) | per seed | of ceiling | compile s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in records:
        print(f"| {r['design']} | {r['K']} | {r['num_seeds']} | {r['devices']} | {r['updates_per_s']:.0f} | "
              f"{r['updates_per_s_per_seed']:.0f} | {100 * r['fraction_of_ceiling']:.0f}% | {r['compile_s']:.1f} |")

    baseline = records[0]["updates_per_s"]
    best_single = max(r["updates_per_s"] for r in records if r["design"] == "update_n")
    print(f"\none seed: {best_single / baseline:.2f}x the host-sampling baseline (target 1.3x), "
          f"{100 * best_single / ceiling:.0f}% of the ceiling (target 85%)")
    one_at = {r["K"]: r["updates_per_s"] for r in records if r["design"] == "update_n"}
    for r in records:
        if r["design"] in ("sharded", "processes") and r["num_seeds"] == devices:
            what = "seeds on as many devices" if r["design"] == "sharded" else "independent one-core processes"
            print(f"{devices} {what} (K={r['K']}): {r['updates_per_s'] / one_at[r['K']]:.2f}x the total "
                  f"updates/s of one seed at the same K (target 1.2x for two)")
    if FLAGS.json:
        with open(FLAGS.json, "w") as f:
            json.dump({"machine": {"platform": platform, "device_kind": jax.devices()[0].device_kind, "cores": cores,
                                   "update_flops": flops, "matmul_gflops": gflops, "ceiling_updates_per_s": ceiling},
                       "records": records}, f, indent=2)


def main(argv):
    del argv
    if FLAGS.child:
        run_child(FLAGS.child)
        return
    data, arrays, config = setup()
    windows, seconds = (3, 2.0) if FLAGS.quick else (5, 5.0)
    platform = jax.devices()[0].platform
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    flops = update_flops(data, config)
    gflops = matmul_gflops(windows, seconds)
    ceiling = gflops * 1e9 / flops
    print(f"{platform} ({jax.devices()[0].device_kind}), {cores} cores; one update = {flops / 1e6:.0f} MFLOP; "
          f"matmul throughput {gflops:.0f} GFLOP/s -> ceiling {ceiling:.0f} updates/s per device")

    records = [bench_host_baseline(data, arrays, config, windows, seconds)]
    for k in (1, 10, 100, 1000):
        records.append(bench_update_n(data, config, k, 1, windows, seconds))
    for n in (4, 16):
        records.append(bench_update_n(data, config, 100, n, windows, seconds))
    devices = FLAGS.sharded_devices or (cores if platform == "cpu" else len(jax.devices()))
    if devices > 1:
        for n, k in ((devices, 100), (devices, 1000), (16, 100)):
            if platform == "cpu":
                record = sharded_record(n, k, devices)
            else:
                record = bench_update_n(data, config, k, n, windows, seconds, multiseed.make_mesh(n, devices))
            if record:
                records.append(record)
        if platform == "cpu" and hasattr(os, "sched_setaffinity"):
            record = processes_record(devices, 1000)
            if record:
                records.append(record)

    report(records, platform, cores, devices, flops, gflops, ceiling)


if __name__ == "__main__":
    cli.run(main, FLAGS)
