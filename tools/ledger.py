"""The results ledger: one JSON line per finished run (per grid point of a sweep), whatever
machine ran it, and the README's results table generated from it.

    python -m tools.ledger add runs/hopper-mr                      # a finished run's rows, to results/ledger.jsonl
    python -m tools.ledger add 'runs/suite/*/*' --ledger=my.jsonl  # several (glob patterns), elsewhere
    python -m tools.ledger table                                   # the table, printed
    python -m tools.ledger table --every_budget                    # ... a line per budget, not only the largest
    python -m tools.ledger table --write=README.md                 # ... written between the README's markers

A row: dataset, algorithm (IQL / BC / IDQL, as tools.plot labels them), config file and the
fields it overrides (command line and sweep point), seeds, steps, the last and best normalised
score (mean, std and per seed), evaluation episodes, hardware, wall time, command, commit, and
the work directory. Adding a run again replaces its rows. The table has one row per dataset x
shipped config, at its largest budget (`--every_budget`: every budget, seed count and hardware);
runs that change anything but the loop's fields (budget, evaluation cadence, checkpoints) or
BC's beta = 0 stay in the ledger only.
"""

import functools
import glob
import importlib.util
import json
import os
import re
import sys

import numpy as np
from absl import flags

from behavior import ids
from harness import cli
from tools.plot import run_label

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LEDGER = os.path.join(ROOT, "results", "ledger.jsonl")
BEGIN = "<!-- ledger table: python -m tools.ledger table --write=README.md; do not edit by hand -->"
END = "<!-- end of ledger table -->"
# Fields of the budget and of how a run is driven, not of what it learns: such overrides keep it in the table.
LOOP_FIELDS = {"max_steps", "pretrain_steps", "online_steps", "eval_interval", "eval_episodes", "log_interval", "checkpoint_interval", "keep_checkpoints",
               "steps_per_call", "tensorboard", "eval_max_episode_steps", "pretrain_eval_interval"}
COLUMNS = ("BC", "IQL", "IDQL", "IQL fine-tuned", "IDQL fine-tuned")
# The papers' scores of the D4RL set a local set stands for (IQL / BC; IQL paper, Table 1).
PAPER = {
    "halfcheetah/medium": (47.4, 42.6), "hopper/medium": (66.3, 52.9), "walker2d/medium": (78.3, 75.3),
    "halfcheetah/medium-replay": (44.2, 36.6), "hopper/medium-replay": (94.7, 18.1),
    "walker2d/medium-replay": (73.9, 26.0), "halfcheetah/medium-expert": (86.7, 55.2),
    "hopper/medium-expert": (91.5, 52.5), "walker2d/medium-expert": (109.6, 107.5),
    "antmaze/umaze": (87.5, 54.6), "antmaze/umaze-diverse": (62.2, 45.6), "antmaze/medium-play": (71.2, 0.0),
    "antmaze/medium-diverse": (70.0, 0.0), "antmaze/large-play": (39.6, 0.0), "antmaze/large-diverse": (47.5, 0.0),
}
# Fine-tuning (IQL paper, Table 2: after 1M offline, then after 1M online steps).
PAPER_FINETUNED = {"antmaze/umaze": (86.7, 96.0), "antmaze/umaze-diverse": (75.0, 84.0),
                   "antmaze/medium-play": (72.0, 95.0), "antmaze/medium-diverse": (68.3, 92.0),
                   "antmaze/large-play": (25.5, 46.0), "antmaze/large-diverse": (42.6, 60.7)}

FLAGS = flags.FlagValues()
flags.DEFINE_string("ledger", LEDGER, "The ledger file (JSON lines).", flag_values=FLAGS)
flags.DEFINE_string("write", None, "table: replace the table between the markers in this file.", flag_values=FLAGS)
flags.DEFINE_bool("every_budget", False, "table: a line per budget, seed count and hardware, not only the largest.",
                  flag_values=FLAGS)


def read_json(path: str) -> dict:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise cli.UserError(f"cannot read {path}: {e}") from e


def rows_of(workdir: str) -> list[dict]:
    """The ledger rows of one finished work directory: one, or one per sweep point."""
    if not os.path.exists(os.path.join(workdir, "summary.json")):
        raise cli.UserError(f"{workdir} holds no finished run (no summary.json)")
    config, summary = read_json(os.path.join(workdir, "config.json")), read_json(os.path.join(workdir, "summary.json"))
    points = summary.get("points") or [dict(summary, hyperparameters={})]
    rows = []
    for point in points:
        hyper = point["hyperparameters"]
        resolved = dict(config["config"], **hyper)
        per_seed = point.get("per_seed", {})
        rows.append({
            "dataset": config["flags"]["dataset"],
            "algorithm": run_label(resolved),
            "config": config.get("config_file"),  # file[:variant]
            "overrides": dict(config.get("overrides", {}), **hyper),
            "seeds": sorted(int(s) for s in per_seed),
            "steps": summary.get("steps"),
            "metric": summary.get("metric"),
            "last": {"mean": point.get("last_mean"), "std": point.get("last_std"),
                     "per_seed": {s: v["last"] for s, v in per_seed.items()}},
            "best": {"mean": point.get("best_mean"), "std": point.get("best_std"),
                     "per_seed": {s: v["best"] for s, v in per_seed.items()}},
            "eval_episodes": config["config"].get("eval_episodes"),
            "hardware": config.get("hardware"),
            "wall_time_s": summary.get("wall_time_s"),
            "command": config.get("command"),
            "commit": config.get("commit"),
            "workdir": os.path.abspath(workdir),
            "point": hyper,
        })
    return rows


def read(path: str) -> list[dict]:
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def add(workdirs: list[str], path: str) -> list[dict]:
    """Append the runs' rows to the ledger at `path`, replacing rows of the same runs."""
    new = [row for w in workdirs for row in rows_of(w)]
    keys = {(r["workdir"], json.dumps(r["point"], sort_keys=True)) for r in new}
    kept = [r for r in read(path) if (r.get("workdir"), json.dumps(r.get("point", {}), sort_keys=True)) not in keys]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        for row in kept + new:
            f.write(json.dumps(row, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return new


def in_table(row: dict) -> bool:
    """A shipped config as it is (no variant such as :smoke; BC: with beta = 0), changed only in
    its budget and in how the loop runs it."""
    shipped = bool(row.get("config")) and ":" not in row["config"]
    if not shipped or row.get("last", {}).get("mean") is None:
        return False
    defaults = shipped_config(row["config"])
    changed = {k: v for k, v in (row.get("overrides") or {}).items()
               if k not in LOOP_FIELDS and json.dumps(v) != json.dumps(defaults.get(k))}  # (a sweep may set the default)
    if row["algorithm"] == "BC":
        changed.pop("beta", None)
    return not changed


@functools.lru_cache(maxsize=None)
def shipped_config(path: str) -> dict:
    """A config file's fields as shipped (JSON values), {} when it is not there."""
    file = os.path.join(ROOT, path)
    if not os.path.exists(file):
        return {}
    spec = importlib.util.spec_from_file_location(f"ledger_{os.path.basename(path)[:-3]}", file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return json.loads(json.dumps(module.get_config().to_dict()))


def hardware_name(hw: dict | None) -> str:
    if not hw:
        return "unrecorded"
    if hw.get("platform") == "cpu":
        return f"CPU: {hw.get('cpu', '?')}, {hw.get('cores', '?')} cores"
    return f"{hw.get('devices', 1)} x {hw.get('device_kind', '?')}"


def paper(dataset: str, config: str) -> str:
    """The paper's IQL / BC (fine-tuning: offline -> online) for the D4RL set a local set stands for."""
    match = re.fullmatch(r"local/(?:d4rl-)?(\w+)/([\w-]+?)-v\d+", dataset)
    key = f"{match.group(1)}/{match.group(2)}" if match else None
    if key and key.startswith("antmaze/") and not dataset.startswith("local/d4rl-antmaze/"):
        key = None  # Gymnasium's ant: another task than the paper's
    if "finetune" in config:
        scores = PAPER_FINETUNED.get(key)
        return f"{scores[0]} -> {scores[1]}" if scores else ""
    scores = PAPER.get(key)
    return f"{scores[0]} / {scores[1]}" if scores else ""


def score(rows: list[dict]) -> str:
    """Mean +- std over seeds of the last evaluations, pooled over `rows` (a row that kept only its
    mean and std stands alone)."""
    if len(rows) == 1 and not rows[0]["last"].get("per_seed"):
        last, seeds = rows[0]["last"], len(rows[0]["seeds"])
        return f"{last['mean']:.1f}" if seeds <= 1 else f"{last['mean']:.1f} ± {last['std']:.1f}"
    values = np.array([v for r in rows for v in (r["last"].get("per_seed") or {"": r["last"]["mean"]}).values()], float)
    return f"{values.mean():.1f}" if len(values) == 1 else f"{values.mean():.1f} ± {values.std():.1f}"


def table(rows: list[dict], every_budget: bool = False) -> str:
    """The Markdown results table (deterministic: rows sorted, columns fixed): one line per dataset
    (by its current id, behavior/ids.py) x shipped config at its largest budget (steps, then seeds;
    every budget with `every_budget`)."""
    groups: dict[tuple, dict[str, list]] = {}
    for r in filter(in_table, rows):
        key = (ids.current(r["dataset"]), os.path.basename(r["config"]), int(r["steps"]), len(r["seeds"]) or 1,
               hardware_name(r.get("hardware")))
        groups.setdefault(key, {}).setdefault(r["algorithm"], []).append(r)
    if not every_budget:
        largest: dict[tuple, tuple] = {}
        for key in groups:
            if key[:2] not in largest or (key[2], key[3], len(groups[key])) > largest[key[:2]][2:4] + (
                    len(groups[largest[key[:2]]]),):
                largest[key[:2]] = key
        groups = {key: groups[key] for key in largest.values()}
    used = [c for c in COLUMNS if any(c in g for g in groups.values())]
    lines = ["| dataset | config | steps | seeds | " + " | ".join(used) + " | paper | hardware |",
             "|---" * (len(used) + 6) + "|"]
    for key in sorted(groups):
        dataset, config, steps, seeds, hw = key
        cells = [score(groups[key][c]) if c in groups[key] else "" for c in used]
        lines.append(f"| `{dataset}` | `{config}` | {steps:,} | {seeds} | " + " | ".join(cells) +
                     f" | {paper(dataset, config)} | {hw} |")
    return "\n".join(lines) + "\n"


def write_table(text: str, path: str) -> None:
    """Replace what lies between the markers in `path` with `text`."""
    with open(path) as f:
        content = f.read()
    if BEGIN not in content or END not in content:
        raise cli.UserError(f"{path} has no ledger table markers; put these two lines where the table goes:\n"
                            f"{BEGIN}\n{END}")
    head, rest = content.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    with open(path, "w") as f:
        f.write(f"{head}{BEGIN}\n{text}{END}{tail}")


def readme_table(path: str) -> str:
    """The table between the markers of `path`, as written there."""
    with open(path) as f:
        content = f.read()
    return content.split(BEGIN, 1)[1].split(END, 1)[0].lstrip("\n")


def main(argv):
    if len(argv) < 2 or argv[1] not in ("add", "table"):
        raise cli.UserError("usage: python -m tools.ledger add <workdir or pattern>... | table [--write=README.md]")
    if argv[1] == "add":
        patterns = argv[2:]
        workdirs = sorted({w for p in patterns for w in (glob.glob(p) or [p])})
        if not workdirs:
            raise cli.UserError("add: name at least one work directory")
        for row in add(workdirs, FLAGS.ledger):
            print(f"{FLAGS.ledger}: {row['algorithm']} on {row['dataset']}, {row['steps']} steps, seeds {row['seeds']}: "
                  f"{row['last']['mean']:.1f}")
        return
    text = table(read(FLAGS.ledger), FLAGS.every_budget)
    if FLAGS.write:
        write_table(text, FLAGS.write)
        print(f"wrote the table ({text.count(chr(10)) - 2} rows) into {FLAGS.write}")
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    cli.run(main, FLAGS)
