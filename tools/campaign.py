"""A fixed time budget spent on whatever accelerator JAX sees: the speed, then the papers' budget.

    python -m tools.campaign --minutes=60 --out=runs/campaign     # e.g. a GPU node's hour
    python -m tools.campaign --tiny --minutes=1 --out=/tmp/camp   # tiny nets, data and budgets (the tests)

Three phases, in order; rerunning the same command resumes (campaign.json records what is done,
each training run resumes from its checkpoint), and the campaign stops cleanly at the budget:

1. datasets: the local sets of the budget phase that are missing, built in parallel, one
   process per set up to the host's cores;
2. speed (compile time apart from the rate): IQL `update_n` updates/s for 1, 8, 32 and 128
   vmapped members, IDQL's update, fine-tuning's env steps/s (train_finetune.py's loop, one seed,
   in the first set's env), and an 80-member sweep against one member (wall time of a step);
3. budget: IQL and BC in one program (`--sweep=beta=0,<the config's>`) x 5 seeds at 1M steps,
   one dataset after another (hopper medium-replay, walker2d medium-expert, halfcheetah medium,
   then the rest), then IDQL (its authors' settings) on the first set while time remains. Each is
   train_offline.py in a process of its own; at the budget it gets SIGTERM, saves a checkpoint and
   stops. Evaluation every 250k steps, 10 episodes per member (each run's summary.json gives the
   share of its wall time that evaluation took).

Writes <out>/campaign.json (every measurement and run) and prints a table; finished runs are added
to the results ledger (tools/ledger.py; --ledger).
"""

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time

import gymnasium as gym
import jax
from absl import flags

import dataset as dataset_lib
from behavior import ids
from configs import idql_mujoco, iql_mujoco, iql_mujoco_finetune
from harness import cli, multiseed, outputs, rundir, sources
from idql import IDQLLearner
from learner import IQLLearner
from tools import bench, ledger

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ORDER = ("hopper/medium-replay", "walker2d/medium-expert", "halfcheetah/medium", "hopper/medium", "walker2d/medium",
         "halfcheetah/medium-replay", "hopper/medium-expert", "walker2d/medium-replay", "halfcheetah/medium-expert")
TINY_ENVS = ("Hopper-v5", "Walker2d-v5")

FLAGS = flags.FlagValues()
flags.DEFINE_float("minutes", 60.0, "The time budget, all phases together.", flag_values=FLAGS)
flags.DEFINE_string("out", "runs/campaign", "Folder for campaign.json and the runs.", flag_values=FLAGS)
flags.DEFINE_bool("tiny", False, "Tiny networks, datasets and budgets: the whole campaign in about a minute on a CPU.",
                  flag_values=FLAGS)
flags.DEFINE_string("ledger", None, "Add finished runs to this ledger (default: results/ledger.jsonl; with --tiny, "
                    "none unless given; '' for none).", flag_values=FLAGS)


class Plan:
    """What the campaign runs: full size, or tiny (--tiny)."""

    def __init__(self, tiny: bool):
        self.tiny = tiny
        self.members = (1, 2, 4) if tiny else (1, 8, 32, 128)
        self.sweep_members = 4 if tiny else 80
        self.hidden = (16, 16) if tiny else (256, 256)
        self.k, self.window = (10, 0.5) if tiny else (1000, 5.0)  # updates per call; seconds per timing window
        self.datasets = ([f"campaign/{env.split('-')[0].lower()}/random-v0" for env in TINY_ENVS] if tiny
                         else [ids.make(*name.split("/")) for name in ORDER])
        self.steps, self.eval_interval, self.seeds = (200, 100, 2) if tiny else (1_000_000, 250_000, 5)
        self.eval_episodes = 2 if tiny else 10

    def run_args(self, algo: str, dataset: str, workdir: str) -> list[str]:
        config = "idql_mujoco.py" if algo == "idql" else "iql_mujoco.py"
        args = [f"--config={os.path.join(ROOT, 'configs', config)}{':smoke' if self.tiny else ''}", f"--dataset={dataset}",
                f"--workdir={workdir}", f"--num_seeds={self.seeds}", f"--config.eval_episodes={self.eval_episodes}"]
        if algo == "iql":
            args.append(f"--sweep=beta=0,{iql_mujoco.get_config().beta:g}")
        steps = self.steps if algo == "iql" else (self.steps if self.tiny else idql_mujoco.get_config().max_steps)
        args += [f"--config.max_steps={steps}", f"--config.eval_interval={self.eval_interval}",
                 f"--config.checkpoint_interval={self.eval_interval}"]
        return args + (["--config.hidden_dims=(16,16)", "--config.tensorboard=False"] if self.tiny else [])


def build_one(dataset_id: str) -> tuple[str, float]:
    """Build one dataset (in a process of its own); (id, seconds)."""
    tic = time.perf_counter()
    if dataset_id.startswith("campaign/"):  # tiny: a random policy's steps, recorded by Minari
        import minari  # (heavy; only the tiny sets need it here)

        env_id = next(e for e in TINY_ENVS if e.split("-")[0].lower() == dataset_id.split("/")[1])
        env = minari.DataCollector(gym.make(env_id, max_episode_steps=50))
        env.reset(seed=0)
        env.action_space.seed(0)
        for _ in range(1000):
            _, _, terminated, truncated, _ = env.step(env.action_space.sample())
            if terminated or truncated:
                env.reset()
        env.create_dataset(dataset_id, eval_env=env_id, algorithm_name="random", ref_min_score=0.0,
                           ref_max_score=1000.0)
    else:
        sources.ensure_local(dataset_id)
    return dataset_id, time.perf_counter() - tic


def exists(dataset_id: str) -> bool:
    return os.path.isdir(os.path.join(dataset_lib.minari_root(), dataset_id))


def build_datasets(plan: Plan) -> dict:
    missing = [d for d in plan.datasets if not exists(d)]
    tic = time.perf_counter()
    if missing:
        workers = min(len(missing), os.cpu_count() or 1)
        print(f"building {len(missing)} dataset(s) with {workers} process(es): {', '.join(missing)}", flush=True)
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            built = dict(pool.map(build_one, missing))
    else:
        built = {}
    return {"built": built, "workers": min(len(missing), os.cpu_count() or 1), "wall_s": time.perf_counter() - tic}


def speed_of(agent_class, config, members: int, plan: Plan, data) -> dict:
    """One program of `members` vmapped agents: updates/s of the program and of all members."""
    mesh = multiseed.make_mesh(members)
    create = lambda key: agent_class.create(key, data.observations[0], data.actions[0],  # noqa: E731
                                            agent_class.fields(config))
    state = [multiseed.create_agents(create, list(range(members)), mesh)]
    shared = multiseed.replicate(data, mesh)

    def call():
        state[0], info = multiseed.update_n(state[0], shared, plan.k, config.batch_size)
        jax.block_until_ready(info)

    compile_s, steps = bench.timed(call, plan.k, windows=3, seconds=plan.window)
    return {"members": members, "compile_s": compile_s, "steps_per_s": steps, "member_updates_per_s": steps * members}


def online_speed(plan: Plan, data, env_id: str) -> dict:
    """Fine-tuning's env steps/s for one seed (train_finetune.py's loop, utd 1, in the set's env)."""
    config = iql_mujoco_finetune.get_config()
    config.hidden_dims = plan.hidden
    capacity = data.size + 10 * plan.k if plan.tiny else config.buffer_size
    seed = bench.OnlineSeed(config, lambda: gym.make(env_id), data, capacity)
    k = plan.k
    compile_s, steps = bench.timed(lambda: seed.steps(k), k, windows=3, seconds=plan.window)
    seed.envs.close()
    return {"members": 1, "env": env_id, "compile_s": compile_s, "steps_per_s": steps, "member_updates_per_s": steps}


def measure_speed(plan: Plan) -> dict:
    data, info = dataset_lib.load_dataset(plan.datasets[0], "locomotion", download=False)
    iql = iql_mujoco.get_config()
    iql.hidden_dims = plan.hidden
    rows = {"iql": [speed_of(IQLLearner, iql, m, plan, data) for m in plan.members]}
    idql = idql_mujoco.get_config("smoke" if plan.tiny else "")
    rows["idql"] = [speed_of(IDQLLearner, idql, 1, plan, data)]
    rows["online"] = [online_speed(plan, data, info.env_id)]
    sweep = speed_of(IQLLearner, iql, plan.sweep_members, plan, data)
    one = rows["iql"][0]
    rows["sweep"] = dict(sweep, wall_vs_one=one["steps_per_s"] / sweep["steps_per_s"])
    for row in rows["iql"] + rows["idql"] + rows["online"] + [rows["sweep"]]:
        print(f"  {row['members']:>4} member(s): {row['steps_per_s']:,.0f} steps/s, "
              f"{row['member_updates_per_s']:,.0f} member updates/s, compile {row['compile_s']:.1f} s", flush=True)
    return rows


def train(plan: Plan, algo: str, dataset: str, out: str, deadline: float) -> dict:
    """One train_offline.py run until it finishes or the deadline (SIGTERM: it saves and stops)."""
    name = f"{algo}-{dataset.split('/', 1)[1].replace('/', '-')}"
    workdir = os.path.join(out, "runs", name)
    summary = os.path.join(workdir, "summary.json")
    if not os.path.exists(summary):
        cmd = [sys.executable, os.path.join(ROOT, "train_offline.py"), *plan.run_args(algo, dataset, workdir)]
        print(f"{name}: {' '.join(cmd[2:])}", flush=True)
        with open(os.path.join(out, "runs.log"), "a") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
            while proc.poll() is None:
                if time.monotonic() > deadline:
                    proc.send_signal(signal.SIGTERM)  # it checkpoints and exits
                    proc.wait()
                    return {"run": name, "workdir": workdir, "finished": False}
                time.sleep(0.5)
        if proc.returncode != 0:
            raise cli.UserError(f"{name} failed (exit {proc.returncode}); its output is in {out}/runs.log")
    with open(summary) as f:
        result = json.load(f)
    return {"run": name, "workdir": workdir, "finished": True, "wall_time_s": result.get("wall_time_s"),
            "eval_time_fraction": result.get("eval_time_fraction"),
            "points": [{"hyperparameters": p["hyperparameters"], "last_mean": p["last_mean"], "last_std": p["last_std"]}
                       for p in result.get("points", [dict(result, hyperparameters={})])]}


def main(argv):
    cli.check_no_arguments(argv)
    if FLAGS.minutes <= 0:
        raise cli.UserError("--minutes must be > 0")
    deadline, plan = time.monotonic() + 60 * FLAGS.minutes, Plan(FLAGS.tiny)
    os.makedirs(FLAGS.out, exist_ok=True)
    path = os.path.join(FLAGS.out, "campaign.json")
    state = {}
    if os.path.exists(path):
        with open(path) as f:
            state = json.load(f)
    state.update(hardware=rundir.hardware(), minutes=FLAGS.minutes, tiny=FLAGS.tiny)

    def save():
        outputs.write_json(path, state)

    if "datasets" not in state:
        state["datasets"] = build_datasets(plan)
        save()
    if "speed" not in state:
        print("speed:", flush=True)
        state["speed"] = measure_speed(plan)
        save()
    runs = state.setdefault("runs", {})
    ledger_path = FLAGS.ledger if FLAGS.ledger is not None else (None if FLAGS.tiny else ledger.LEDGER)
    for algo, dataset in [("iql", d) for d in plan.datasets] + [("idql", plan.datasets[0])]:
        if time.monotonic() > deadline:
            break
        result = train(plan, algo, dataset, FLAGS.out, deadline)
        runs[result["run"]] = result
        if result["finished"] and ledger_path:
            ledger.add([result["workdir"]], ledger_path)
        save()
    state["status"] = "complete" if all(r["finished"] for r in runs.values()) and len(runs) == len(plan.datasets) + 1 \
        else "stopped at the budget: rerun the same command to go on"
    save()
    print_table(state)


def print_table(state: dict) -> None:
    hw = state["hardware"]
    print(f"\n{hw['device_kind']} x {hw['devices']} ({hw['cpu']}, {hw['cores']} cores); {state['status']}")
    print("| what | members | steps/s | member updates/s | compile s |\n|---|---|---|---|---|")
    speed = state["speed"]
    parts = (("IQL update_n", speed["iql"]), ("IDQL update_n", speed["idql"]),
             ("fine-tuning env steps (utd 1)", speed.get("online", [])), ("sweep", [speed["sweep"]]))
    for part, rows in parts:
        for r in rows:
            print(f"| {part} | {r['members']} | {r['steps_per_s']:,.0f} | {r['member_updates_per_s']:,.0f} | "
                  f"{r['compile_s']:.1f} |")
    print(f"\n{speed['sweep']['members']} members take {speed['sweep']['wall_vs_one']:.2f}x the wall time of one per step")
    print("\n| run | finished | scores (last mean ± std per point) | wall s | evaluation share |\n|---|---|---|---|---|")
    for r in state["runs"].values():
        scores = ", ".join(f"{p['hyperparameters'] or ''} {p['last_mean']:.1f} ± {p['last_std']:.1f}"
                           for p in r.get("points", []))
        share = f"{100 * r['eval_time_fraction']:.0f}%" if r.get("eval_time_fraction") is not None else ""
        wall = f"{r['wall_time_s']:.0f}" if r.get("wall_time_s") else ""
        print(f"| {r['run']} | {r['finished']} | {scores} | {wall} | {share} |")


if __name__ == "__main__":
    cli.run(main, FLAGS)
