"""Speed benchmark, as one table (and JSON with --json): IQL's updates/s, fine-tuning's env
steps/s, IDQL's update and acting, and a sweep grid, each against its ceiling.

    python -m tools.bench --quick --json=bench.json    # a few minutes on a laptop CPU
    python -m tools.bench --parts=online               # one part, longer timing windows

Each configuration is compiled first (compile time reported apart), then timed over several
windows; the table gives the median (docs/speed.md has the figures and what each row times).
  iql     obs 11, act 3, batch 256, (256, 256) nets: host-sampled single updates (the peers'
          design), `update_n`, seeds vmapped, seeds sharded one device per core; vs a matmul chain.
  online  AntMaze umaze fine-tuning (2M-row buffer): train_finetune.py's loop, as a share of the
          same agent's offline updates/s.
  idql    configs/idql_mujoco.py: the update and acting for 10 envs, against the matmuls they cost.
  sweep   an 8-point beta grid as one program against 8 one-agent processes over the same window.
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
from harness import cli, devices, multiseed, online
from idql import IDQLLearner
from learner import IQLLearner
from replay_buffer import ReplayBuffer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PARTS = ("iql", "online", "idql", "sweep")

FLAGS = flags.FlagValues()
flags.DEFINE_bool("quick", False, "Short timing windows (a few minutes in all).", flag_values=FLAGS)
flags.DEFINE_string("json", None, "Also write the records to this JSON file.", flag_values=FLAGS)
flags.DEFINE_list("parts", list(PARTS), f"What to measure, of {', '.join(PARTS)}.", flag_values=FLAGS)


def timed(fn, per_call: int, best: bool = False, windows: int | None = None,
          seconds: float | None = None) -> tuple[float, float]:
    """(compile seconds, median rate over the windows; with `best` the fastest window, for a
    ceiling), `fn` doing `per_call` units per call; windows of `seconds` (default: --quick's)."""
    def seconds_of(calls: int) -> float:
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        return time.perf_counter() - start

    if windows is None:
        windows, seconds = (3, 2.0) if FLAGS.quick else (5, 5.0)
    compile_s, _ = seconds_of(1), seconds_of(1)  # the first call compiles; one more warms up
    calls = max(1, int(seconds / max(seconds_of(1), 1e-6)))
    rates = [calls * per_call / seconds_of(calls) for _ in range(windows)]
    return compile_s, max(rates) if best else statistics.median(rates)


def random_data(size: int, obs_dim: int, act_dim: int, reward_transform: str = "none"):
    rng = np.random.default_rng(0)
    return dataset_lib.from_arrays(
        observations=rng.standard_normal((size, obs_dim)).astype(np.float32),
        actions=rng.uniform(-1, 1, (size, act_dim)).astype(np.float32),
        rewards=(rng.random(size) < 0.01).astype(np.float32), terminals=(rng.random(size) < 0.001).astype(np.float32),
        next_observations=rng.standard_normal((size, obs_dim)).astype(np.float32), reward_transform=reward_transform)[0]


def record(part: str, what: str, unit: str, timing: tuple[float, float], flops: float | None = None,
           ceiling: float | None = None) -> dict:
    """One row of the table; `timing` is `timed`'s, `flops` per unit of the rate, `ceiling` in GFLOP/s."""
    row = {"part": part, "what": what, "rate": timing[1], "unit": unit, "compile_s": timing[0]}
    if flops and ceiling:
        row.update(gflops_per_s=timing[1] * flops / 1e9, of_ceiling=timing[1] * flops / 1e9 / ceiling)
    return row


def flops_of(jitted, *args) -> float:
    analysis = jitted.lower(*args).compile().cost_analysis()
    return float((analysis[0] if isinstance(analysis, (list, tuple)) else analysis)["flops"])


def chain_gflops(batch: int, width: int, training: bool = False) -> float:
    """GFLOP/s of dependent batch x 256 @ 256 x width @ width x 256 matmuls; with `training`, the
    six matmuls a block costs in training (forward, input gradients, weight gradients)."""
    keys = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(keys[0], (batch, 256))
    w1, w2 = jax.random.normal(keys[1], (256, width)) / 16.0, jax.random.normal(keys[2], (width, 256)) / width**0.5
    reps = 20

    def block(_, carry):
        y, g1, g2 = carry
        h = y @ w1
        out = h @ w2
        if not training:
            return out, g1, g2
        dh = out @ w2.T  # `out` stands in for the incoming gradient
        return (dh @ w1.T) / 16.0, g1 + y.T @ dh, g2 + h.T @ out

    chain = jax.jit(lambda y: jax.lax.fori_loop(0, reps, block, (y, jnp.zeros_like(w1), jnp.zeros_like(w2))))
    _, rate = timed(lambda: jax.block_until_ready(chain(x)), reps, best=True)
    return rate * (6 if training else 2) * 2 * batch * 256 * width / 1e9


def bench_update_n(agents, data, k: int, batch: int):
    """`update_n` of K updates per call: for one agent the agent's own method, else multiseed's."""
    state = [agents]
    one = not isinstance(jax.tree.leaves(agents)[0].sharding, jax.sharding.NamedSharding)

    def call():
        state[0], info = (state[0].update_n(data, k, batch) if one else multiseed.update_n(state[0], data, k, batch))
        jax.block_until_ready(info)

    return timed(call, k)


def iql_setup():
    config, data = iql_mujoco.get_config(), random_data(100_000, 11, 3)
    return data, lambda key: IQLLearner.create(key, data.observations[0], data.actions[0], IQLLearner.fields(config))


def bench_iql() -> list[dict]:
    data, create = iql_setup()
    flops, ceiling = flops_of(IQLLearner.update, create(jax.random.key(0)), data.sample(jax.random.key(1), 256)), chain_gflops(256, 256)
    agent, host = [create(jax.random.key(0))], jax.device_get(data)
    rng = np.random.default_rng(0)

    def host_step():  # the peers' design: a NumPy batch, one jitted update per call
        batch = jax.tree.map(lambda x: x[rng.integers(0, data.size, 256)], host)
        agent[0], info = agent[0].update(batch)
        jax.block_until_ready(info)

    rows = [record("iql", "host sampling, 1 update per call", "updates/s", timed(host_step, 1), flops, ceiling)]
    for k in (1, 100, 1000):
        timing = bench_update_n(create(jax.random.key(0)), data, k, 256)
        rows.append(record("iql", f"update_n, K={k}", "updates/s", timing, flops, ceiling))
    mesh = multiseed.make_mesh(4, 1)
    compile_s, rate = bench_update_n(multiseed.create_agents(create, range(4), mesh), multiseed.replicate(data, mesh), 100, 256)
    rows.append(record("iql", "4 seeds vmapped on 1 device, K=100 (all seeds)", "updates/s", (compile_s, 4 * rate),
                       flops, ceiling))
    count = devices.num_cores() if jax.devices()[0].platform == "cpu" else len(jax.devices())
    if count > 1:
        found = child_record(["seeds", str(count), "100"], count)
        if found:
            rows.append(record("iql", f"{count} seeds on {count} devices, K=100 (all seeds)", "updates/s",
                               (found["compile_s"], found["rate"]), flops, ceiling))
    return rows


def child_record(args: list[str], device_count: int) -> dict | None:
    """A tools/bench_child.py measurement in a subprocess (on a CPU the device count is fixed when JAX
    starts): its RECORD, or None after printing why it failed."""
    xla = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={device_count}"
    env = dict(os.environ, XLA_FLAGS=xla)
    out = subprocess.run([sys.executable, "-m", "tools.bench_child", *args] + ["--quick"] * FLAGS.quick, cwd=ROOT, env=env,
                         capture_output=True, text=True)
    found = [json.loads(line[len("RECORD "):]) for line in out.stdout.splitlines() if line.startswith("RECORD ")]
    if not found:
        print(f"tools.bench_child {' '.join(args)} failed:\n{out.stderr[-2000:]}", file=sys.stderr)
    return found[0] if found else None


class OnlineSeed:
    """One seed of train_finetune.py's online phase, ready to step: the agent, its replay buffer
    of `capacity` rows seeded with `data`, its env on the host."""

    def __init__(self, config, make_env, data, capacity: int = 2_000_000):
        self.config, self.envs = config, online.HostEnvs(make_env, [0])
        self.mesh, act_dim = multiseed.make_mesh(1, 1), self.envs.envs[0].action_space.shape[0]
        self.shared = multiseed.replicate(data, self.mesh)
        self.create = lambda key: IQLLearner.create(key, data.observations[0], data.actions[0],  # noqa: E731
                                                    IQLLearner.fields(config))
        self.agents = multiseed.create_agents(self.create, [0], self.mesh)
        buffer = ReplayBuffer.from_dataset(jax.device_get(data), capacity, 1.0, -1.0)
        stats = online.OnlineStats.create(np.zeros(1), np.full((1, online.RECENT), np.nan))
        self.state = multiseed.shard_seeds(online.OnlineState(multiseed.stack([buffer]), stats,
                                                              np.zeros((1, act_dim), np.float32)), self.mesh)
        self.keys = multiseed.shard_seeds(jax.random.split(jax.random.key(1), 1), self.mesh)
        self.update = online.compiled_update(self.mesh, config.utd, config.batch_size, False)
        self.store_and_act = online.compiled_store_and_act(self.mesh, config.online_temperature)
        self.step = 0

    def steps(self, k: int) -> None:
        """k env steps of train_finetune.py's loop (update; env step on the host; store and act)."""
        for _ in range(k):
            self.agents, metrics = self.update(self.agents, self.state.buffers, self.shared)
            rows = self.envs.step(multiseed.local_rows(self.state.actions))
            self.step += 1
            self.state = self.store_and_act(self.state, self.agents, self.keys,
                                            multiseed.from_local_rows(rows, self.mesh), self.step)
        jax.block_until_ready(metrics)


def bench_online() -> list[dict]:
    """One seed's env steps/s and its offline updates/s, in one process."""
    config = iql_antmaze_finetune.get_config()
    make_env = lambda: evaluation.flat_observations(mazes.make_env("antmaze", "umaze", evaluation=False))  # noqa: E731
    env = make_env()
    data = random_data(1_000_000, env.observation_space.shape[0], env.action_space.shape[0], "antmaze")
    seed, k = OnlineSeed(config, make_env, data), config.steps_per_call
    rows = [record("online", f"offline updates (update_n, K={k})", "updates/s",
                   bench_update_n(multiseed.create_agents(seed.create, [0], seed.mesh), seed.shared, k, config.batch_size))]
    rows.append(record("online", "the online loop (train_finetune.py)", "env steps/s", timed(lambda: seed.steps(k), k)))
    seed.envs.close()
    for row in rows[1:]:
        row["of_offline"] = row["rate"] / rows[0]["rate"]
    return rows


def bench_idql() -> list[dict]:
    config, data = idql_mujoco.get_config(), random_data(100_000, 11, 3)
    create = lambda: IDQLLearner.create(jax.random.key(0), data.observations[0], data.actions[0],  # noqa: E731
                                        IDQLLearner.fields(config))
    agent = create()  # for acting: the update's agent is donated
    flops = flops_of(IDQLLearner.update, agent, data.sample(jax.random.key(1), 256))
    rows = [record("idql", "update, batch 256", "updates/s", bench_update_n(create(), data, 20, 256), flops,
                   chain_gflops(256, 1024, training=True))]
    obs, counter = data.observations[:10], iter(range(10**9))
    act = lambda: jax.block_until_ready(agent.sample_actions(obs, jax.random.fold_in(jax.random.key(0), next(counter)), 1.0))  # noqa: E731
    compile_s, calls = timed(act, 1)
    flops = flops_of(IDQLLearner.sample_actions, agent, obs, jax.random.key(0), 1.0) / 10
    rows.append(record("idql", f"acting, 10 envs ({agent.num_samples} x {agent.betas.shape[0]} reverse steps)",
                       "env steps/s", (compile_s, 10 * calls), flops, chain_gflops(640, 1024)))
    return rows


def bench_sweep(members: int = 8, k: int = 100) -> list[dict]:
    """An 8-point beta grid in one program (harness/sweep.py; on a CPU over the host devices
    train_offline.py would ask for) against 8 one-agent runs side by side in their own
    processes, timed over the same window once all of them have compiled."""
    count = devices.num_local_cpu_devices(members) if jax.devices()[0].platform == "cpu" else len(jax.devices())
    found = child_record(["grid", str(members), str(k)], count)
    rows = [] if found is None else [record(
        "sweep", f"{members}-point grid in one program on {found['devices']} device(s), K={k} (all members)",
        "updates/s", (found["compile_s"], found["rate"]))]
    window = 4.0 if FLAGS.quick else 10.0
    procs = [subprocess.Popen([sys.executable, "-m", "tools.bench_child", "alone", str(k), str(window)], cwd=ROOT,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for _ in range(members)]
    compiles = [float(p.stdout.readline().split()[1]) for p in procs]  # "READY <compile s>" once warm
    for p in procs:  # go: every process times the same window
        p.stdin.write("go\n")
        p.stdin.flush()
    counts = [int(p.communicate()[0].split()[1]) for p in procs]  # "DONE <updates>"
    rows.append(record("sweep", f"{members} one-agent runs side by side, K={k} (all runs)", "updates/s",
                       (statistics.median(compiles), sum(counts) / window)))
    return rows


def report(rows: list[dict]) -> None:
    print("\n| part | what | rate | of ceiling | of offline | compile s |\n|---|---|---|---|---|---|")
    for r in rows:
        of = f"{100 * r['of_ceiling']:.0f}%" if "of_ceiling" in r else "-"
        print(f"| {r['part']} | {r['what']} | {r['rate']:.1f} {r['unit']} | {of} | "
              + (f"{100 * r['of_offline']:.0f}%" if "of_offline" in r else "-") + f" | {r['compile_s']:.1f} |")


def main(argv):
    cli.check_no_arguments(argv)
    unknown = sorted(set(FLAGS.parts) - set(PARTS))
    if unknown:
        raise cli.UserError(f"--parts: unknown {unknown}; choose from {', '.join(PARTS)}")
    device = jax.devices()[0]
    cores = devices.num_cores()
    print(f"{device.platform} ({device.device_kind}), {cores} cores")
    benches = {"iql": bench_iql, "online": bench_online, "idql": bench_idql, "sweep": bench_sweep}
    rows = [row for part in PARTS if part in FLAGS.parts for row in benches[part]()]
    report(rows)
    if FLAGS.json:
        with open(FLAGS.json, "w") as f:
            json.dump({"machine": {"platform": device.platform, "device_kind": device.device_kind, "cores": cores},
                       "rows": rows}, f, indent=2)


if __name__ == "__main__":
    cli.run(main, FLAGS)
