"""The benchmark suite: IQL, BC and IDQL over the D4RL-style locomotion datasets, then plots.

    python -m tools.suite --steps=1000000 --num_seeds=5                      # the papers' budget
    python -m tools.suite --steps=20000 --idql_steps=10000 --num_seeds=2     # what fits on a laptop
    python -m tools.suite --algos=iql,bc --envs=hopper --kinds=medium        # a slice

Each (algorithm, dataset) pair is one `train_offline.py` run in `<root>/<algo>/<env>-<kind>`
with all seeds in one process (`--num_seeds`: vmapped, and sharded one device per core on a
CPU or over all accelerators: the fastest layout train_offline picks for the machine). BC is
the IQL actor with beta = 0 (every advantage weight is 1). Missing `local/...` datasets are
built from the shipped behavior policies first. Resumable: finished runs (summary.json) are
skipped, interrupted ones resume from their last checkpoint, so the same command continues
a suite. At the end it runs tools/plot.py: `<root>/curves.png` and `<root>/results.md`.
With `--sweep` (docs/sweeps.md) each run trains the whole grid; the table has a column per point.
"""

import importlib.util
import json
import os
import subprocess
import sys
import time

from absl import flags

from behavior import ids
from harness import cli, sweep
from tools import ledger

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ALGOS = {  # name -> (config file, extra overrides)
    "iql": ("configs/iql_mujoco.py", []),
    "bc": ("configs/iql_mujoco.py", ["--config.beta=0.0"]),
    "idql": ("configs/idql_mujoco.py", []),
}
ENVS = ("hopper", "halfcheetah", "walker2d")
KINDS = ("medium", "medium-replay", "medium-expert")

FLAGS = flags.FlagValues()
flags.DEFINE_list("algos", list(ALGOS), f"Algorithms, from {list(ALGOS)}.", flag_values=FLAGS)
flags.DEFINE_list("envs", list(ENVS), "Environments (the <env> of local/<env>/<kind>-v0).", flag_values=FLAGS)
flags.DEFINE_list("kinds", list(KINDS), "Dataset kinds (the <kind> of local/<env>/<kind>-v0).", flag_values=FLAGS)
flags.DEFINE_list("datasets", None, "Dataset ids instead of --envs x --kinds (any id train_offline takes).",
                  flag_values=FLAGS)
flags.DEFINE_integer("steps", 1_000_000, "Gradient steps per run.", flag_values=FLAGS)
flags.DEFINE_integer("idql_steps", 0, "Gradient steps for IDQL (0: --steps).", flag_values=FLAGS)
flags.DEFINE_integer("num_seeds", 5, "Seeds per run, trained together in one process.", flag_values=FLAGS)
flags.DEFINE_integer("seed", 0, "First seed.", flag_values=FLAGS)
flags.DEFINE_integer("eval_interval", 0, "Evaluate every this many steps (0: a tenth of the run, at most the "
                     "config's).", flag_values=FLAGS)
flags.DEFINE_integer("eval_episodes", 10, "Episodes per seed at each evaluation.", flag_values=FLAGS)
flags.DEFINE_string("root", "runs/suite", "Folder holding one work directory per run, curves.png and results.md.",
                    flag_values=FLAGS)
flags.DEFINE_string("ledger", None, "Append each finished run to this results ledger (default: results/ledger.jsonl, "
                    "or none with --smoke; '' for none).", flag_values=FLAGS)
flags.DEFINE_bool("smoke", False, "Use the configs' :smoke variants (tiny networks; for trying the suite out).",
                  flag_values=FLAGS)
flags.DEFINE_multi_string("sweep", [], "A hyperparameter grid for every run (repeatable, as train_offline's "
                          "--sweep), e.g. --sweep=beta=1,3,10: each run trains all its points in one process.",
                          flag_values=FLAGS)
flags.DEFINE_multi_string("override", [], "An extra flag for every run (repeatable), e.g. "
                          "--override=--config.batch_size=512.", flag_values=FLAGS)


def dataset_ids() -> list[str]:
    if FLAGS.datasets:
        return FLAGS.datasets
    return [ids.make(env, kind) for env in FLAGS.envs for kind in FLAGS.kinds]


def workdir(algo: str, dataset: str) -> str:
    name = dataset.split("/", 1)[-1].removesuffix("-v0").replace("/", "-")
    return os.path.join(FLAGS.root, algo, name)


def load_config(algo: str):
    """The run's config, as train_offline will build it (for its steps_per_call)."""
    path = os.path.join(ROOT, ALGOS[algo][0])
    spec = importlib.util.spec_from_file_location(f"suite_config_{algo}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config("smoke") if FLAGS.smoke else module.get_config()


def steps_of(algo: str) -> int:
    return FLAGS.idql_steps if algo == "idql" and FLAGS.idql_steps else FLAGS.steps


def run_command(algo: str, dataset: str) -> list[str]:
    config, extra = ALGOS[algo]
    steps = steps_of(algo)
    per_call = load_config(algo).steps_per_call
    if steps % per_call:
        raise cli.UserError(f"{algo}: {steps} steps is not a multiple of its config's steps_per_call ({per_call})")
    # Evaluate (and checkpoint) about ten times, between compiled calls.
    interval = FLAGS.eval_interval or max(per_call, steps // 10 // per_call * per_call)
    config = os.path.join(ROOT, config) + (":smoke" if FLAGS.smoke else "")
    return [sys.executable, os.path.join(ROOT, "train_offline.py"), f"--config={config}", f"--dataset={dataset}",
            f"--workdir={workdir(algo, dataset)}", f"--seed={FLAGS.seed}", f"--num_seeds={FLAGS.num_seeds}",
            f"--config.max_steps={steps}", f"--config.eval_interval={interval}",
            f"--config.eval_episodes={FLAGS.eval_episodes}",
            # A checkpoint at every evaluation: an interrupted suite loses at most one interval.
            f"--config.checkpoint_interval={interval}", *extra, *(f"--sweep={s}" for s in FLAGS.sweep),
            *FLAGS.override]


def finished(path: str) -> dict | None:
    summary = os.path.join(path, "summary.json")
    if os.path.exists(summary):
        with open(summary) as f:
            return json.load(f)
    return None


def main(argv):
    del argv
    unknown = sorted(set(FLAGS.algos) - set(ALGOS))
    if unknown:
        raise cli.UserError(f"--algos: unknown {unknown}; choose from {list(ALGOS)}")
    if FLAGS.num_seeds < 1 or FLAGS.steps < 1 or FLAGS.idql_steps < 0:
        raise cli.UserError("--num_seeds and --steps must be >= 1, --idql_steps >= 0")
    jobs = [(algo, dataset) for dataset in dataset_ids() for algo in FLAGS.algos]
    commands = {job: run_command(*job) for job in jobs}  # every flag error before the first run
    os.makedirs(FLAGS.root, exist_ok=True)
    log_path = os.path.join(FLAGS.root, "suite.log")
    start = time.perf_counter()
    for i, (algo, dataset) in enumerate(jobs, 1):
        path = workdir(algo, dataset)
        head = f"[{i}/{len(jobs)}] {algo} on {dataset}"
        done = finished(path)
        if done is not None:
            if done.get("steps") != steps_of(algo):
                raise cli.UserError(f"{path} finished with {done.get('steps')} steps, but {steps_of(algo)} are asked "
                                    "now; pass another --root (or move that run away) to train again")
            print(f"{head}: finished earlier ({done.get('last_mean', float('nan')):.1f}), skipped")
            continue
        cmd = commands[(algo, dataset)]
        print(f"{head}: {' '.join(cmd[1:])}", flush=True)
        tic = time.perf_counter()
        with open(log_path, "a") as log:  # the runs' own output, for when one fails
            log.write(f"\n$ {' '.join(cmd)}\n")
            log.flush()
            proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT)
        if proc.returncode != 0:
            raise cli.UserError(f"{algo} on {dataset} failed (exit {proc.returncode}); its output is at the end of "
                                f"{log_path}; rerun the same command to resume the suite")
        done = finished(path) or {}
        ledger_path = FLAGS.ledger if FLAGS.ledger is not None else (None if FLAGS.smoke else ledger.LEDGER)
        if ledger_path:
            ledger.add([path], ledger_path)
        best = f" at {sweep.describe(done['best_point'])}" if done.get("best_point") else ""
        print(f"{head}: final {done.get('last_mean', float('nan')):.1f} +- {done.get('last_std', float('nan')):.1f}"
              f"{best} in {time.perf_counter() - tic:.0f} s", flush=True)

    workdirs = [workdir(algo, dataset) for algo, dataset in jobs]
    plot_cmd = [sys.executable, "-m", "tools.plot", f"--workdirs={','.join(workdirs)}",
                f"--out={os.path.join(FLAGS.root, 'curves.png')}",
                f"--table_out={os.path.join(FLAGS.root, 'results.md')}"]
    # The work directories are relative to the caller's folder: run there, with the project importable.
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    if subprocess.run(plot_cmd, env=env).returncode != 0:
        raise cli.UserError("plot.py failed on the suite's runs")
    print(f"suite done in {time.perf_counter() - start:.0f} s this time; results in {FLAGS.root}")


if __name__ == "__main__":
    cli.run(main, FLAGS)
