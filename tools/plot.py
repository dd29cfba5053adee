"""Learning curves and a results table from work directories.

    python -m tools.plot --workdirs='runs/suite/*/*' --out=curves.png
    python -m tools.plot --workdirs=runs/a,runs/b --labels=IQL,BC --table_out=results.md

Each work directory is one run of train_offline.py / train_finetune.py (one or more seeds):
its `eval.csv` gives the curve and `config.json` names the dataset and the algorithm; a sweep
(--sweep) gives one curve per grid point, labelled with its values. Runs
with the same dataset and label are pooled (their seeds together). The figure has one panel
per dataset and one line per label: the mean over seeds of the normalised score at each
evaluation step, with a band of +-1 std over seeds. The table has one row per dataset and one
column per label: the final score (the last evaluation of each seed), mean +- std over seeds,
and in brackets the best score (each seed's best evaluation), mean +- std over seeds: the
same numbers as each run's summary.json.
"""

import collections
import csv
import glob
import json
import math
import os
import re

import numpy as np
from absl import flags

from harness import cli, outputs, rundir, sweep

FLAGS = flags.FlagValues()
flags.DEFINE_list("workdirs", None, "Work directories, or glob patterns matching them.", flag_values=FLAGS)
flags.DEFINE_list("labels", None, "One label per work directory (default: from each run's config: IQL, BC for "
                  "beta = 0, IDQL).", flag_values=FLAGS)
flags.DEFINE_string("out", "curves.png", "PNG file for the learning curves ('' for none).", flag_values=FLAGS)
flags.DEFINE_string("table_out", None, "Also write the Markdown table to this file.", flag_values=FLAGS)
flags.DEFINE_integer("panel_width", 400, "Width of one panel, in pixels.", flag_values=FLAGS)
flags.DEFINE_integer("panel_height", 300, "Height of one panel, in pixels.", flag_values=FLAGS)
flags.DEFINE_integer("columns", 3, "Panels per row.", flag_values=FLAGS)
flags.DEFINE_string("title", None, "Title over the figure.", flag_values=FLAGS)

DPI = 100
ORDER = ("BC", "IQL", "IDQL")  # the papers' column order; other labels follow alphabetically
KINDS = ("random", "medium", "medium-replay", "medium-expert", "expert")


def run_label(config: dict) -> str:
    """IQL with beta = 0 is behavior cloning: every advantage weight exp(0 * A) is 1.
    Runs of train_finetune.py (their config has online_steps) are marked as fine-tuned."""
    algo = str(config.get("algo", "iql")).upper()
    if algo == "IQL" and float(config.get("beta", 1.0)) == 0.0:
        algo = "BC"
    return f"{algo} fine-tuned" if "online_steps" in config else algo


def read_runs(workdir: str, label: str | None = None) -> list[dict]:
    """[{'dataset', 'label', 'rows', 'workdir'}] of one work directory (rows as summarize()
    expects): one entry, or one per grid point of a sweep (--sweep), labelled with its values."""
    config_path, eval_path = os.path.join(workdir, "config.json"), os.path.join(workdir, "eval.csv")
    for path in (config_path, eval_path):
        if not os.path.exists(path):
            raise cli.UserError(f"{workdir} is not a finished or running work directory: {path} is missing")
    with open(config_path) as f:
        saved = json.load(f)
    fields = [spec.partition("=")[0] for spec in saved.get("flags", {}).get("sweep") or []]
    points: dict = {}
    with open(eval_path) as f:
        for r in csv.DictReader(f):
            score = r.get("normalized_score")
            points.setdefault(tuple(float(r[k]) for k in fields), []).append(
                {"step": int(r["step"]), "seed": int(r["seed"]), "return": float(r["return"]),
                 "normalized_score": float(score) if score not in (None, "") else None})
    dataset = saved.get("flags", {}).get("dataset") or os.path.basename(os.path.normpath(workdir))
    config = saved.get("config", {})
    runs = []
    for values, rows in points.items():
        point = dict(zip(fields, values))
        name = label or run_label({**config, **point})
        runs.append({"dataset": dataset, "label": f"{name} {sweep.describe(point)}".strip(), "rows": rows,
                     "workdir": workdir})
    return runs


def expand(patterns: list[str]) -> list[str]:
    """Work directories named by `patterns` (globs allowed; only folders with an eval.csv)."""
    found = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        matches = [m for m in matches if not glob.has_magic(pattern) or os.path.exists(os.path.join(m, "eval.csv"))]
        if not matches:
            raise cli.UserError(f"--workdirs: nothing matches {pattern!r}")
        found += [m for m in matches if m not in found]
    return found


def group(runs: list[dict]) -> dict:
    """{(dataset, label): eval rows of all seeds}; a seed may appear in one run only."""
    pooled: dict = collections.defaultdict(list)
    owner: dict = {}
    for run in runs:
        key = (run["dataset"], run["label"])
        for seed in {r["seed"] for r in run["rows"]}:
            if owner.setdefault((key, seed), run["workdir"]) != run["workdir"]:
                raise cli.UserError(f"seed {seed} of {key[1]} on {key[0]} is in both {owner[(key, seed)]} and "
                                    f"{run['workdir']}; pass one of them")
        pooled[key] += run["rows"]
    return dict(pooled)


def dataset_order(datasets) -> list[str]:
    """Sorted by domain, then in D4RL's order of kinds (medium, medium-replay, medium-expert)."""
    def key(dataset):
        domain, _, name = dataset.rpartition("/")
        kind = re.sub(r"-v\d+$", "", name)
        return domain, KINDS.index(kind) if kind in KINDS else len(KINDS), name

    return sorted(set(datasets), key=key)


def label_order(labels) -> list[str]:
    """The papers' algorithms first, in their order (with a sweep's points after each algorithm's
    name, e.g. 'IQL beta=3'), then other labels alphabetically."""
    def key(label):
        name = label.split(" ", 1)[0]
        return (ORDER.index(name) if name in ORDER else len(ORDER), label)
    return sorted(set(labels), key=key)


def curve(rows: list[dict], metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(steps, mean, std, seeds counted) over seeds at each evaluation step."""
    by_step: dict = collections.defaultdict(list)
    for r in rows:
        by_step[r["step"]].append(r[metric])
    steps = np.array(sorted(by_step))
    values = [np.array(by_step[s], dtype=float) for s in steps]
    return (steps, np.array([v.mean() for v in values]), np.array([v.std() for v in values]),
            np.array([len(v) for v in values]))


def table(pooled: dict) -> str:
    """Markdown: a row per dataset, a column per label; final mean +- std (best mean +- std)."""
    labels = label_order(label for _, label in pooled)
    datasets = dataset_order(dataset for dataset, _ in pooled)
    lines = ["| dataset | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    metrics, details = set(), []
    for dataset in datasets:
        cells = []
        for label in labels:
            rows = pooled.get((dataset, label))
            if not rows:
                cells.append("")
                continue
            s = rundir.summarize(rows)
            metrics.add(s["metric"])
            if s["num_seeds"] == 1:  # no spread to show
                cells.append(f"{s['last_mean']:.1f} ({s['best_mean']:.1f})")
            else:
                cells.append(f"{s['last_mean']:.1f} ± {s['last_std']:.1f} ({s['best_mean']:.1f} ± {s['best_std']:.1f})")
            last_steps = sorted({v["last_step"] for v in s["per_seed"].values()})
            details.append(f"{label} on {dataset}: {s['num_seeds']} seed(s), final evaluation at step "
                           f"{'/'.join(str(x) for x in last_steps)}")
        lines.append(f"| {dataset} | " + " | ".join(cells) + " |")
    what = "normalised score" if metrics == {"normalized_score"} else "return (no reference scores)" \
        if metrics == {"return"} else "normalised score, or return where a dataset has no reference scores"
    lines += ["", f"Final {what}: mean ± std over seeds of each seed's last evaluation; in brackets the mean "
              "± std over seeds of each seed's best evaluation (no ± for one seed).", ""] + [f"- {d}" for d in details]
    return "\n".join(lines) + "\n"


def plot(pooled: dict, path: str, panel_width: int, panel_height: int, columns: int, title: str | None) -> None:
    """One panel per dataset, one line (mean) and band (+-1 std over seeds) per label."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    datasets = dataset_order(dataset for dataset, _ in pooled)
    labels = label_order(label for _, label in pooled)
    colors = {label: plt.get_cmap("tab10")(i % 10) for i, label in enumerate(labels)}
    ncols = min(columns, len(datasets))
    nrows = math.ceil(len(datasets) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * panel_width / DPI, nrows * panel_height / DPI),
                             dpi=DPI, squeeze=False)
    for ax, dataset in zip(axes.flat, datasets):
        for label in labels:
            rows = pooled.get((dataset, label))
            if not rows:
                continue
            metric = "normalized_score" if all(r["normalized_score"] is not None for r in rows) else "return"
            steps, mean, std, _ = curve(rows, metric)
            ax.plot(steps, mean, color=colors[label], label=label, linewidth=1.5)
            ax.fill_between(steps, mean - std, mean + std, color=colors[label], alpha=0.2, linewidth=0)
            ax.set_ylabel("normalised score" if metric == "normalized_score" else "return", fontsize=8)
        ax.set_title(dataset, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    for ax in list(axes.flat)[len(datasets):]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=DPI)  # no bbox_inches='tight': the file has exactly the asked size
    plt.close(fig)


def main(argv):
    del argv
    if not FLAGS.workdirs:
        raise cli.UserError("--workdirs is required (work directories or glob patterns)")
    workdirs = expand(FLAGS.workdirs)
    if FLAGS.labels and len(FLAGS.labels) != len(workdirs):
        raise cli.UserError(f"--labels has {len(FLAGS.labels)} entries for {len(workdirs)} work directories")
    runs = [run for i, w in enumerate(workdirs) for run in read_runs(w, FLAGS.labels[i] if FLAGS.labels else None)]
    empty = [r["workdir"] for r in runs if not r["rows"]]
    runs = [r for r in runs if r["rows"]]
    if empty:
        print(f"no evaluations yet in {', '.join(empty)}; left out")
    if not runs:
        raise cli.UserError("none of the work directories has an evaluation yet")
    pooled = group(runs)
    text = table(pooled)
    print(text)
    if FLAGS.table_out:
        outputs.write_text(FLAGS.table_out, text)
    if FLAGS.out:
        plot(pooled, FLAGS.out, FLAGS.panel_width, FLAGS.panel_height, FLAGS.columns, FLAGS.title)
        print(f"wrote {FLAGS.out}")


if __name__ == "__main__":
    cli.run(main, FLAGS)
