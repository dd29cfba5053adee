"""Speed benchmark: steady-state IQL updates/s for the designs and seed layouts in REFERENCE.md,
and IDQL's update and acting against their matmul ceilings.

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

IDQL (`--parts=idql`; configs/idql_mujoco.py, the authors' settings): updates/s at batch 256 and
512, and acting (N = 64 candidates x T = 5 reverse steps per env step, all envs in one compiled
call) for 1 and 10 envs, each with its FLOPs and its fraction of two ceilings measured in the
same run: the 256-wide matmul chain above, a chain of the noise model's forward shapes
(batch x 256 @ 256 x 1024 @ 1024 x 256), and for the update the six matmuls a block costs in
training (forward, input and weight gradients) chained.
"""

import json
import os
import statistics
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

import dataset as dataset_lib
import evaluation
from behavior import mazes
from configs import idql_mujoco, iql_antmaze_finetune, iql_mujoco
from harness import cli, multiseed, online
from idql import IDQLLearner
from learner import IQLLearner
from replay_buffer import ReplayBuffer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FLAGS = flags.FlagValues()
flags.DEFINE_bool("quick", False, "Short timing windows (a few minutes in all).", flag_values=FLAGS)
flags.DEFINE_string("json", None, "Write the records to this JSON file.", flag_values=FLAGS)
flags.DEFINE_integer("sharded_devices", 0, "Devices for the sharded configurations (0: one per CPU core, "
                     "or all accelerators).", flag_values=FLAGS)
flags.DEFINE_multi_integer("online_seeds", [1], "--parts=online: seeds per process (repeat the flag for several).",
                           flag_values=FLAGS)
flags.DEFINE_list("parts", ["iql", "idql", "online"], "What to measure: iql (updates, seed layouts), idql (update, "
                  "acting), online (AntMaze fine-tuning's env steps/s against offline updates/s).",
                  flag_values=FLAGS)
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
    agent = [IQLLearner.create(jax.random.key(0), arrays["observations"][0], arrays["actions"][0], IQLLearner.fields(config))]
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
    create = lambda key: IQLLearner.create(key, data.observations[0], data.actions[0], IQLLearner.fields(config))  # noqa: E731
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


def cost_flops(jitted, *args) -> float:
    """FLOPs of one call of a jitted function, from XLA's cost analysis."""
    analysis = jitted.lower(*args).compile().cost_analysis()
    analysis = analysis[0] if isinstance(analysis, (list, tuple)) else analysis
    return float(analysis["flops"])


def update_flops(data, config) -> float:
    agent = IQLLearner.create(jax.random.key(0), data.observations[0], data.actions[0], IQLLearner.fields(config))
    return cost_flops(IQLLearner.update, agent, data.sample(jax.random.key(1), BATCH))


def matmul_gflops(windows, seconds, width: int = 256, batch: int = BATCH) -> float:
    """Throughput of dependent (batch x 256) @ (256 x width) @ (width x 256) matmuls: width 256
    is the bulk of an IQL update, 1024 the bulk of IDQL's noise model."""
    x = jax.random.normal(jax.random.key(0), (batch, 256))
    w1 = jax.random.normal(jax.random.key(1), (256, width)) / 16.0
    w2 = jax.random.normal(jax.random.key(2), (width, 256)) / width**0.5
    reps = 100

    @jax.jit
    def chain(x):
        return jax.lax.fori_loop(0, reps, lambda _, y: (y @ w1) @ w2, x)

    _, rate = timed(lambda: jax.block_until_ready(chain(x)), reps, windows, seconds)
    return rate * 2 * 2 * batch * 256 * width / 1e9


def block_training_gflops(windows, seconds, batch: int) -> float:
    """Throughput of the six matmuls one LN-ResNet block costs in training, chained: forward
    x @ W1 (256 -> 1024) @ W2 (1024 -> 256), then the input and weight gradients of both
    (the weight gradients contract over the batch). The ceiling of IDQL's update: a copy of
    the update with all its non-matmul work removed runs no faster than these."""
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(k1, (batch, 256))
    w1 = jax.random.normal(k2, (256, 1024)) / 16.0
    w2 = jax.random.normal(k3, (1024, 256)) / 32.0
    reps = 20

    def block(_, carry):
        x, g1, g2 = carry
        h = x @ w1
        y = h @ w2
        dh = y @ w2.T  # y stands in for the incoming gradient
        return (dh @ w1.T) / 16.0, g1 + x.T @ dh, g2 + h.T @ y

    @jax.jit
    def chain(x):
        return jax.lax.fori_loop(0, reps, block, (x, jnp.zeros_like(w1), jnp.zeros_like(w2)))

    _, rate = timed(lambda: jax.block_until_ready(chain(x)), reps, windows, seconds)
    return rate * 6 * 2 * batch * 256 * 1024 / 1e9


def bench_idql(data, windows, seconds) -> dict:
    """IDQL's update (batch 256 and the authors' 512) and acting (1 and 10 envs), with FLOPs
    and the fraction of the two ceilings."""
    config = idql_mujoco.get_config()
    ceilings = {"matmul_256_gflops": matmul_gflops(windows, seconds, 256),
                "matmul_1024_gflops": matmul_gflops(windows, seconds, 1024),
                **{f"block_training_{b}_gflops": block_training_gflops(windows, seconds, b) for b in (256, 512)}}
    agent = IDQLLearner.create(jax.random.key(0), data.observations[0], data.actions[0], IDQLLearner.fields(config))
    records = []
    for batch in (256, 512):
        flops = cost_flops(IDQLLearner.update, agent, data.sample(jax.random.key(1), batch))
        state = [IDQLLearner.create(jax.random.key(0), data.observations[0], data.actions[0], IDQLLearner.fields(config))]
        k = 20

        def call():
            state[0], info = state[0].update_n(data, k, batch)
            jax.block_until_ready(info)

        compile_s, rate = timed(call, k, windows, seconds)
        records.append({"design": "idql_update", "batch_size": batch, "K": k, "updates_per_s": rate,
                        "flops": flops, "compile_s": compile_s})
    for num_envs in (1, 10):
        obs = data.observations[:num_envs]
        flops = cost_flops(IDQLLearner.sample_actions, agent, obs, jax.random.key(0), 1.0)
        counter = iter(range(10**9))

        def act():  # one compiled call for all envs: N candidates x T reverse steps each
            jax.block_until_ready(agent.sample_actions(obs, jax.random.fold_in(jax.random.key(0), next(counter)), 1.0))

        compile_s, rate = timed(act, 1, windows, seconds)
        records.append({"design": "idql_acting", "num_envs": num_envs, "num_samples": agent.num_samples,
                        "diffusion_steps": int(agent.betas.shape[0]), "calls_per_s": rate,
                        "env_steps_per_s": rate * num_envs, "flops": flops, "compile_s": compile_s})
    for r in records:
        per_s = r.get("updates_per_s", r.get("calls_per_s"))
        r["gflops_per_s"] = per_s * r["flops"] / 1e9
        r["of_matmul_256"] = r["gflops_per_s"] / ceilings["matmul_256_gflops"]
        r["of_matmul_1024"] = r["gflops_per_s"] / ceilings["matmul_1024_gflops"]
        if r["design"] == "idql_update":
            r["of_block_training"] = r["gflops_per_s"] / ceilings[f"block_training_{r['batch_size']}_gflops"]
    print(f"\nIDQL (configs/idql_mujoco.py): matmul throughput {ceilings['matmul_256_gflops']:.0f} GFLOP/s "
          f"(256 wide), {ceilings['matmul_1024_gflops']:.0f} GFLOP/s (the noise model's 256 -> 1024 -> 256); "
          f"a block's training matmuls {ceilings['block_training_256_gflops']:.0f} / "
          f"{ceilings['block_training_512_gflops']:.0f} GFLOP/s at batch 256 / 512")
    print("| what | batch / envs | rate | GFLOP per call | GFLOP/s | of 256-wide | of 1024-wide | of training matmuls |")
    print("|---|---|---|---|---|---|---|---|")
    for r in records:
        if r["design"] == "idql_update":
            what, size, rate = "update", r["batch_size"], f"{r['updates_per_s']:.1f} updates/s"
        else:
            what = f"acting ({r['num_samples']} x {r['diffusion_steps']})"
            size, rate = r["num_envs"], f"{r['env_steps_per_s']:.0f} env steps/s"
        print(f"| {what} | {size} | {rate} | {r['flops'] / 1e9:.3f} | {r['gflops_per_s']:.0f} | "
              f"{100 * r['of_matmul_256']:.0f}% | {100 * r['of_matmul_1024']:.0f}% | "
              + (f"{100 * r['of_block_training']:.0f}% |" if "of_block_training" in r else "- |"))
    return {"ceilings": ceilings, "records": records}


class ConstantHost:
    """A `compiled_online_chunk` host step that steps no env: the first observation, reward 0,
    never done (the loop's own cost: callbacks, update, insert, acting)."""

    def __init__(self, first_obs: np.ndarray):
        zeros = np.zeros(len(first_obs), np.float32)
        self.result = (first_obs, zeros, zeros, zeros, first_obs)

    def start(self, seed_ids, actions):
        return np.float32(0.0)

    def finish(self, seed_ids, _after):
        return self.result


def bench_online(windows, seconds, num_seeds: int = 1, buffer_size: int = 2_000_000,
                 data_size: int = 1_000_000) -> dict:
    """Online fine-tuning on AntMaze (umaze, obs 31, act 8; configs/iql_antmaze_finetune.py,
    `num_seeds` seeds in one process, one env each): env steps/s per seed of the online loop
    (`online.compiled_online_chunk`: steps_per_call env steps per compiled call, each stepping
    the env on the host, updating once, storing the transition and acting) against the offline
    loop's updates/s (`update_n`, steps_per_call updates per call) for the same agent and data
    shapes; the same loop with a host step that steps no env (`ConstantHost`); the env step alone."""
    config = iql_antmaze_finetune.get_config()
    make = lambda: evaluation.flat_observations(mazes.make_env("antmaze", "umaze", evaluation=False))  # noqa: E731
    seeds = list(range(num_seeds))
    envs = online.HostEnvs(make, seeds)
    obs_dim, act_dim = envs.first_obs.shape[1], envs.envs[0].action_space.shape[0]
    rng = np.random.default_rng(0)
    data, _ = dataset_lib.from_arrays(
        observations=rng.standard_normal((data_size, obs_dim)).astype(np.float32),
        actions=rng.uniform(-1, 1, (data_size, act_dim)).astype(np.float32),
        rewards=(rng.random(data_size) < 0.01).astype(np.float32), terminals=np.zeros(data_size, np.float32),
        next_observations=rng.standard_normal((data_size, obs_dim)).astype(np.float32), reward_transform="antmaze")
    mesh = multiseed.make_mesh(num_seeds, 1)
    create = lambda key: IQLLearner.create(key, data.observations[0], data.actions[0], IQLLearner.fields(config))  # noqa: E731
    agents = [multiseed.create_agents(create, seeds, mesh)]
    shared = multiseed.replicate(data, mesh)
    k = config.steps_per_call

    def offline():
        agents[0], info = multiseed.update_n(agents[0], shared, k, config.batch_size)
        jax.block_until_ready(info)

    offline_compile, offline_rate = timed(offline, k, windows, seconds)
    buffer = ReplayBuffer.from_dataset(jax.device_get(data), buffer_size, 1.0, -1.0)
    stats = online.OnlineStats.create(np.zeros(num_seeds), np.full((num_seeds, online.RECENT), np.nan))
    carry = [multiseed.shard_seeds(x, mesh) for x in (multiseed.stack([buffer] * num_seeds), stats,
                                                      jnp.asarray(envs.first_obs), jnp.zeros((num_seeds, act_dim)))]
    fixed = [multiseed.shard_seeds(x, mesh) for x in (jax.random.split(jax.random.key(1), num_seeds),
                                                      jnp.arange(num_seeds, dtype=jnp.int32))]
    done = [0]

    def online_loop(host_step):
        chunk = online.compiled_online_chunk(mesh, host_step, obs_dim, config.utd, config.batch_size, False,
                                             config.online_temperature)

        def run_chunk():
            buffers, stats, obs, actions = carry
            out = chunk(agents[0], buffers, stats, *fixed, obs, actions, shared, done[0], done[0] + k)
            agents[0], carry[:], info = out[0], list(out[1:5]), out[5]
            done[0] += k
            jax.block_until_ready(info)

        return run_chunk

    online_compile, online_rate = timed(online_loop(envs), k, windows, seconds)
    # The same loop with a host step that returns at once: what the loop costs without the env.
    _, no_env_rate = timed(online_loop(ConstantHost(envs.first_obs)), k, windows, seconds)
    still = np.zeros((num_seeds, act_dim), np.float32)
    _, env_rate = timed(lambda: envs(np.arange(num_seeds), still), num_seeds, windows, seconds)
    envs.close()
    record = {"design": "online_antmaze", "num_seeds": num_seeds, "buffer_size": buffer_size,
              "batch_size": config.batch_size, "env_steps_per_call": k, "offline_updates_per_s": offline_rate,
              "online_env_steps_per_s": online_rate,
              "online_fraction_of_offline": online_rate / offline_rate, "env_only_steps_per_s": env_rate,
              "online_no_env_steps_per_s": no_env_rate,
              "compile_s": online_compile + offline_compile}
    print(f"\nOnline fine-tuning, AntMaze umaze (obs {obs_dim}, act {act_dim}, buffer {buffer_size:,}, batch "
          f"{config.batch_size}, utd {config.utd}, {num_seeds} seed(s); rates per seed):")
    print("| what | rate |\n|---|---|")
    print(f"| offline updates (update_n, {k} per call) | {offline_rate:.0f} updates/s |")
    print(f"| online (compiled_online_chunk, {k} env steps per call: env step, 1 update, store, act) | "
          f"{online_rate:.0f} env steps/s ({100 * online_rate / offline_rate:.0f}% of offline) |")
    print(f"| the same loop, the host step returning at once (no env) | {no_env_rate:.0f} env steps/s "
          f"({100 * no_env_rate / offline_rate:.0f}% of offline) |")
    print(f"| the env step alone (host) | {env_rate:.0f} steps/s |")
    return record


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


def report(records: list[dict], platform: str, devices: int, ceiling: float) -> None:
    """Print the IQL table and the ratios against the targets."""
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


def main(argv):
    del argv
    if FLAGS.child:
        run_child(FLAGS.child)
        return
    unknown = sorted(set(FLAGS.parts) - {"iql", "idql", "online"})
    if unknown:
        raise cli.UserError(f"--parts: unknown {unknown}; choose from iql, idql, online")
    data, arrays, config = setup()
    windows, seconds = (3, 2.0) if FLAGS.quick else (5, 5.0)
    platform = jax.devices()[0].platform
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"{platform} ({jax.devices()[0].device_kind}), {cores} cores")
    results = {"machine": {"platform": platform, "device_kind": jax.devices()[0].device_kind, "cores": cores}}
    if "iql" in FLAGS.parts:
        results.update(bench_iql(data, arrays, config, windows, seconds, platform, cores))
    if "idql" in FLAGS.parts:
        results["idql"] = bench_idql(data, windows, seconds)
    if "online" in FLAGS.parts:
        results["online"] = [bench_online(windows, seconds, n) for n in FLAGS.online_seeds]
    if FLAGS.json:
        with open(FLAGS.json, "w") as f:
            json.dump(results, f, indent=2)


def bench_iql(data, arrays, config, windows, seconds, platform, cores) -> dict:
    """The IQL records: designs, K, seeds and layouts, against the 256-wide matmul ceiling."""
    flops = update_flops(data, config)
    gflops = matmul_gflops(windows, seconds)
    ceiling = gflops * 1e9 / flops
    print(f"IQL: one update = {flops / 1e6:.0f} MFLOP; matmul throughput {gflops:.0f} GFLOP/s -> ceiling "
          f"{ceiling:.0f} updates/s per device")
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
    report(records, platform, devices, ceiling)
    return {"update_flops": flops, "matmul_gflops": gflops, "ceiling_updates_per_s": ceiling, "records": records}


if __name__ == "__main__":
    cli.run(main, FLAGS)
