"""Evaluate a run's saved agents again: the final ones (agent.msgpack) or a checkpoint's.

    python -m tools.evaluate --workdir=runs/iql_local_d4rl-antmaze_umaze-v0_seed0
    python -m tools.evaluate --workdir=runs/... --step=500000 --episodes=30 --out=eval_500k.json

The run's config.json gives the dataset, the config and the seeds (and sweep points). The
episodes are the run's own: a seed's episode seeds and actions at a step come from its
"evaluation" key stream folded with that step (harness/evaluator.py), so evaluating a
checkpoint with the run's episode count reproduces its eval.csv row, and a smaller count
evaluates the first episodes of that row. Columns added to the evaluation after the run was
trained (e.g. AntMaze's flip_rate) are measured too. Works for train_offline.py and
train_finetune.py runs.
"""

import json
import os
import types

import ml_collections
import numpy as np
from absl import flags

from harness import algorithms, cli, multiseed, outputs, setup, sweep
from harness.evaluator import Evaluator

FLAGS = flags.FlagValues()
flags.DEFINE_string("workdir", None, "Work directory of a train_offline.py / train_finetune.py run.", flag_values=FLAGS)
flags.DEFINE_integer("step", None, "Evaluate the checkpoint of this step (default: the final agents, agent.msgpack).",
                     flag_values=FLAGS)
flags.DEFINE_integer("episodes", None, "Episodes per seed (default: the run's config.eval_episodes).",
                     flag_values=FLAGS)
flags.DEFINE_string("out", None, "Also write the results to this JSON file.", flag_values=FLAGS)


def as_config(saved: dict) -> ml_collections.ConfigDict:
    """config.json's "config" as the run's ConfigDict (JSON's lists back to tuples)."""
    return ml_collections.ConfigDict({k: tuple(v) if isinstance(v, list) else v for k, v in saved.items()})


def read_run(workdir: str) -> dict:
    path = os.path.join(workdir, "config.json")
    try:
        with open(path) as f:
            saved = json.load(f)
        return {"config": as_config(saved["config"]), "flags": saved["flags"]}
    except FileNotFoundError:
        raise cli.UserError(f"{path} does not exist: --workdir must be a run's work directory") from None
    except (ValueError, KeyError, TypeError) as e:
        raise cli.UserError(f"{path} is not a run's config.json: {type(e).__name__}: {e}") from e


def saved_agents(workdir: str, step, template) -> tuple:
    """(agents, step): the checkpoint of `step`, or the final agents at the run's last step."""
    if step is None:
        path = os.path.join(workdir, "agent.msgpack")
        summary_path = os.path.join(workdir, "summary.json")
        if not (os.path.exists(path) and os.path.exists(summary_path)):
            steps = outputs.Checkpointer(workdir).steps()
            raise cli.UserError(f"{workdir} holds no final agents (the run has not finished); pass --step= one of its "
                                f"checkpoints' steps: {sorted(steps) or 'none'}")
        with open(summary_path) as f:
            last_step = int(json.load(f)["steps"])
        return outputs.load_pytree(path, template), last_step
    checkpointer = outputs.Checkpointer(workdir)
    if step not in checkpointer.steps():
        raise cli.UserError(f"{workdir} has no checkpoint of step {step}; its checkpoints: "
                            f"{sorted(checkpointer.steps()) or 'none'}")
    # A checkpoint holds the agents beside the loop's state (a fine-tuning run's buffers too).
    state = outputs.load_pytree(checkpointer.path(step), lambda raw: {**raw, "agents": template})
    return state["agents"], int(state["step"])


def results_of(columns: dict, members) -> list[dict]:
    """One dict per member: its seed, its sweep point's values, and its evaluation columns."""
    rows = []
    for i, seed in enumerate(members.seeds):
        row = {"seed": int(seed), **(members.points[i] if members.fields else {})}
        row.update({k: None if v[i] is None else float(v[i]) for k, v in columns.items()})
        rows.append(row)
    return rows


def load_run(workdir: str, step, episodes=None) -> types.SimpleNamespace:
    """A run's config, members, data source and saved agents (those of checkpoint `step`, or the
    final ones), rebuilt from its config.json (harness/setup.py, as the scripts build it);
    `episodes` overrides config.eval_episodes."""
    saved = read_run(workdir)
    config, run_flags = saved["config"], saved["flags"]
    if episodes is not None:
        if episodes <= 0:
            raise cli.UserError(f"--episodes must be > 0, got {episodes}")
        config.eval_episodes = episodes
    if config.algo not in algorithms.ALGORITHMS:
        raise cli.UserError(f"{workdir}'s config.algo={config.algo!r} is not one of {sorted(algorithms.ALGORITHMS)}")
    run = setup.rebuild(config, types.SimpleNamespace(**{"env_name": None, "sweep": [], **run_flags}),
                        loop_fields=tuple(config))
    agents, step = saved_agents(workdir, step, multiseed.fetch(run.create_agents()))
    return types.SimpleNamespace(config=config, flags=run_flags, members=run.members, mesh=run.mesh, source=run.source,
                                 agents=agents, step=step)


def main(argv):
    cli.check_no_arguments(argv)
    if not FLAGS.workdir:
        raise cli.UserError("--workdir is required")
    run = load_run(FLAGS.workdir, FLAGS.step, FLAGS.episodes)
    config, members, mesh, source, agents, step = run.config, run.members, run.mesh, run.source, run.agents, run.step
    if source.make_env is None:
        raise cli.UserError(f"{run.flags['dataset']} names no evaluation env")
    evaluator = Evaluator(source.make_env, members.seeds, config.eval_episodes, source.ref_min, source.ref_max,
                          config.get("eval_temperature"))
    print(f"{FLAGS.workdir}: {'agent.msgpack' if FLAGS.step is None else f'checkpoint of step {step}'}, "
          f"{len(members.seeds)} member(s) x {config.eval_episodes} episodes")
    rows = results_of(evaluator.evaluate(multiseed.shard_seeds(agents, mesh), step), members)
    for row in rows:
        point = sweep.describe({f: row[f] for f in members.fields}) + ": " if members.fields else ""
        print(point + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()))
    means = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]
             if k not in ("seed", *members.fields) and all(r[k] is not None for r in rows)}
    if len(rows) > 1:
        print("mean over members: " + ", ".join(f"{k} {v:.4g}" for k, v in means.items()))
    print(f"{evaluator.seconds:.0f} s")
    if FLAGS.out:
        outputs.write_json(FLAGS.out, {"workdir": FLAGS.workdir, "step": step, "episodes": config.eval_episodes,
                                       "members": rows, "mean": means, "seconds": evaluator.seconds})
        print(f"wrote {FLAGS.out}")


if __name__ == "__main__":
    cli.run(main, FLAGS)
