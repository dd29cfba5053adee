"""The work directory: which run it holds, and what a run writes there when it starts
(`config.json`) and when it ends (`agent.msgpack`, `summary.json`). docs/outputs.md lists
every file."""

import json
import math
import os
import platform
import subprocess
import sys
from typing import Any, Optional

import jax
import numpy as np

from harness import cli, multiseed, outputs, sweep

# The flags that make a run what it is: a resume must match them (and the config).
RUN_FLAGS = ("dataset", "seed", "num_seeds", "env_name", "sweep")


def default_workdir(config, dataset: str, seed: int, prefix: str = "") -> str:
    name = os.path.splitext(os.path.basename(dataset))[0] if dataset.endswith((".hdf5", ".h5", ".npz")) else dataset
    return os.path.join("runs", f"{prefix}{config.algo}_{name.replace('/', '_')}_seed{seed}")


def config_changes(saved: dict, config) -> list[str]:
    """The fields whose values differ between `config` and `saved` (a config.json's "config"),
    compared as JSON (tuples and lists alike)."""
    now = json.loads(json.dumps(config.to_dict(), default=str))
    return sorted(k for k in set(now) | set(saved) if now.get(k) != saved.get(k))


def open_workdir(flag_values, config, prefix: str = "") -> tuple[str, bool]:
    """(the work directory, whether it holds checkpoints to resume). A resume must be the run
    that wrote them (same config and run flags, unless --allow_config_change); a directory
    holding a run without checkpoints is refused, never overwritten."""
    workdir = flag_values.workdir or default_workdir(config, flag_values.dataset, flag_values.seed, prefix)
    resuming = bool(outputs.Checkpointer(workdir).steps())
    if resuming:
        with open(os.path.join(workdir, "config.json")) as f:
            saved = json.load(f)
        changed = [f"config.{k}" for k in config_changes(saved["config"], config)]
        changed += sorted(f"--{k}" for k in RUN_FLAGS if saved["flags"].get(k) != getattr(flag_values, k))
        if changed and not flag_values.allow_config_change:
            raise cli.UserError(f"{workdir} holds checkpoints of a run with different {', '.join(changed)}; rerun "
                                "with the same settings to resume it, pass --allow_config_change to resume with the "
                                "new ones, or choose another --workdir")
        if changed:
            print(f"resuming with changed {', '.join(changed)} (--allow_config_change)")
    elif any(os.path.exists(os.path.join(workdir, f)) for f in ("eval.csv", "train.csv")):
        raise cli.UserError(f"{workdir} already holds a run without checkpoints; choose another --workdir or move it away")
    os.makedirs(workdir, exist_ok=True)
    return workdir, resuming


def write_config(workdir: str, flag_values, config, source, mesh, extra: Optional[dict] = None) -> None:
    """`config.json`: the resolved config, the run flags, the dataset, the devices, the command."""
    info = source.info
    outputs.write_json(os.path.join(workdir, "config.json"), {
        "config": config.to_dict(),
        # The config file (relative to the project when inside it) and the --config.<field> overrides.
        "config_file": config_file(flag_values),
        "overrides": {k: getattr(config, k) for k in sorted(flag_values["config"].override_values)},
        "flags": {k: getattr(flag_values, k) for k in RUN_FLAGS} | {"workdir": workdir},
        "dataset": {"size": source.data.size, "episodes": info.num_episodes, "reward_scale": info.reward_scale,
                    "reward_shift": info.reward_shift, "ref_min_score": source.ref_min,
                    "ref_max_score": source.ref_max, "dropped_timeout_rows": info.dropped_timeout_rows,
                    # The env the run evaluates in, and how a file of a known format was read.
                    "eval_env": info.env_id, "reading": info.reading or None,
                    # The policy acts in [-1, 1]; the env's bounds [low, high] map onto it.
                    "actions": {"low": info.action_low, "high": info.action_high,
                                "rescaled_to_unit_box": info.actions_rescaled, "clipped_rows": info.clipped_action_rows,
                                "max_violation": info.max_action_violation}},
        "devices": [str(d) for d in mesh.devices.flat],
        "hardware": hardware(),
        "command": " ".join(sys.argv),
        "commit": commit(),
        **(extra or {}),
    })


def config_file(flag_values) -> str:
    """`--config`'s file[:variant], relative to the project when it lies inside it."""
    name = flag_values["config"].config_filename
    path, _, variant = name.partition(":")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if os.path.isabs(path) and os.path.commonpath([path, root]) == root:
        path = os.path.relpath(path, root)
    return path + (f":{variant}" if variant else "")


def hardware() -> dict:
    """What the run ran on: the accelerator kind and count, and the host's CPU and core count."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    device = jax.devices()[0]
    return {"platform": device.platform, "device_kind": device.device_kind, "devices": jax.device_count(),
            "cpu": cpu, "cores": os.cpu_count()}


def commit() -> Optional[str]:
    """The project's git commit, with '+changes' when the work tree differs from it; None outside git."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")


def summarize(eval_rows: list[dict]) -> dict:
    """Last and best score per seed, and their mean/std over seeds.

    Uses `normalized_score` when every row has one, else the raw `return` (and says so); with
    a `success_rate` column (maze envs), also the last success rate per seed and over seeds.
    """
    if not eval_rows:
        return {"metric": None, "per_seed": {}}
    use_norm = all(r.get("normalized_score") is not None for r in eval_rows)
    metric = "normalized_score" if use_norm else "return"
    with_success = all(r.get("success_rate") is not None for r in eval_rows)  # maze envs
    per_seed: dict[int, dict] = {}
    for r in sorted(eval_rows, key=lambda r: (r["seed"], r["step"])):
        s = per_seed.setdefault(r["seed"], {"best": -math.inf})
        s["last"], s["last_step"] = r[metric], r["step"]
        s["best"] = max(s["best"], r[metric])
        if with_success:
            s["last_success_rate"] = r["success_rate"]
    last = np.array([s["last"] for s in per_seed.values()])
    best = np.array([s["best"] for s in per_seed.values()])
    extra = {}
    if with_success:
        rates = np.array([s["last_success_rate"] for s in per_seed.values()])
        extra = {"last_success_rate_mean": float(rates.mean()), "last_success_rate_std": float(rates.std())}
    return {
        "metric": metric,
        "per_seed": {str(k): v for k, v in per_seed.items()},
        "last_mean": float(last.mean()),
        "last_std": float(last.std()),
        "best_mean": float(best.mean()),
        "best_std": float(best.std()),
        "num_seeds": len(per_seed),
        **extra,
    }


def summarize_sweep(eval_rows: list[dict], fields: tuple) -> dict:
    """`summarize` for each grid point (rows grouped by the swept `fields`' columns), and the
    best point: the highest mean over its seeds of their last evaluations."""
    points: dict[tuple, list[dict]] = {}
    for r in eval_rows:
        points.setdefault(tuple(r[f] for f in fields), []).append(r)
    grid = [{"hyperparameters": dict(zip(fields, key)), **summarize(rows)} for key, rows in points.items()]
    best = max(grid, key=lambda p: p["last_mean"]) if grid else None
    return {"metric": grid[0]["metric"] if grid else None, "sweep": list(fields), "points": grid,
            "best_point": None if best is None else best["hyperparameters"],
            **({} if best is None else {k: best[k] for k in ("last_mean", "last_std", "best_mean", "best_std")}),
            "num_seeds": best["num_seeds"] if best else 0}


def finish(workdir: str, agents: Any, eval_rows: list[dict], steps: int, wall: float, eval_seconds: float,
           extra: Optional[dict] = None, sweep_fields: tuple = ()) -> dict:
    """Save the agents (`agent.msgpack`, stacked on the seed axis) and write `summary.json`;
    every process takes part (the agents are gathered), the first one writes."""
    host = multiseed.fetch(agents)  # a collective under jax.distributed
    if jax.process_index() != 0:
        return {}
    outputs.save_pytree(os.path.join(workdir, "agent.msgpack"), host)
    summary = summarize_sweep(eval_rows, sweep_fields) if sweep_fields else summarize(eval_rows)
    summary.update(steps=steps, wall_time_s=wall, eval_time_fraction=eval_seconds / wall, **(extra or {}))
    outputs.write_json(os.path.join(workdir, "summary.json"), summary)
    if summary.get("metric"):
        for point in summary.get("points", []):
            print(f"{sweep.describe(point['hyperparameters'])}: final {summary['metric']} {point['last_mean']:.2f} "
                  f"+- {point['last_std']:.2f} (best {point['best_mean']:.2f})")
        best = f" at the best point, {sweep.describe(summary['best_point'])}" if sweep_fields else ""
        print(f"final {summary['metric']}{best}: {summary['last_mean']:.2f} +- {summary['last_std']:.2f} "
              f"(best {summary['best_mean']:.2f}); {wall:.0f} s, {100 * eval_seconds / wall:.1f}% in evaluation")
        print(f"to keep it in the results ledger: python -m tools.ledger add {workdir}")
    return summary


def restore(checkpointer, template) -> Optional[dict]:
    """The newest checkpoint's state, or None for a fresh run. `template` is the state's pytree,
    or a function of the file's raw contents returning it (for states whose structure depends
    on what was saved)."""
    if not checkpointer.steps():
        return None
    pick = template if callable(template) else (lambda raw: template)
    restored = checkpointer.restore(lambda raw: multiseed.fetch(pick(raw)))
    if restored is None:
        raise cli.UserError(f"no checkpoint in {checkpointer.folder} could be read back; move the folder away to "
                            "start over")
    step, state = restored
    print(f"resuming from {checkpointer.path(step)} (step {step})")
    return state


def save(checkpointer, step: int, state: dict) -> str:
    """Checkpoint `state` as step `step`; every process takes part (the state is gathered), the
    first one writes. Returns the file's path."""
    host = multiseed.fetch(state)  # a collective under jax.distributed
    if jax.process_index() == 0:
        checkpointer.save(step, host)
    return checkpointer.path(step)
