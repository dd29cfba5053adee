"""Offline training of IQL (or IDQL) on a Minari dataset or a D4RL-format file.

    python train_offline.py          # IQL on local/hopper/medium-v0, built from the shipped policy if needed
    python train_offline.py --config=configs/iql_mujoco.py --dataset=mujoco/hopper/medium-v0 \
        --workdir=runs/hopper-medium --seed=0
    python train_offline.py --config=configs/iql_mujoco.py --dataset=path/to/hopper-medium-v2.hdf5 \
        --env_name=Hopper-v4

    python train_offline.py --num_seeds=8     # seeds 0..7 in one process, sharded over devices
    python train_offline.py --config=configs/iql_antmaze.py --dataset=local/d4rl-antmaze/umaze-v1 \
        --sweep=expectile=0.7,0.9 --sweep=beta=0,10 --num_seeds=2   # a 2 x 2 grid x 2 seeds, one program

Writes to --workdir: config.json, train.csv, eval.csv (a row per seed), tb/ (TensorBoard),
checkpoints/ (every checkpoint_interval steps, on SIGTERM/SIGINT and at the end), agent.msgpack
(the final agents, stacked on a seed axis) and summary.json. Running the same command again
with the same --workdir resumes from the newest checkpoint, exactly where it stopped.
The algorithm lives in learner.py / idql.py; `train` below is the loop.
"""

import dataclasses
import os
import time

import jax
from absl import flags
from tqdm import tqdm

from harness import algorithms, cli, multiseed, rundir, setup, stops

FLAGS = flags.FlagValues()  # this script's own flags (see harness/cli.py)
cli.define_run_flags(FLAGS)
cli.define_config("config", os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "iql_mujoco.py"),
                  "Config file, optionally with a variant: configs/iql_mujoco.py:smoke.", FLAGS)


@dataclasses.dataclass(frozen=True)
class Phase:
    """How a stretch of offline training labels what it writes: extra columns of its train.csv
    and eval.csv rows, extra entries of its checkpoints, its evaluation interval (None: the
    config's eval_interval) and its progress bar's name (None: the algorithm and member count)."""

    train_columns: dict = dataclasses.field(default_factory=dict)
    eval_columns: dict = dataclasses.field(default_factory=dict)
    checkpoint: dict = dataclasses.field(default_factory=dict)
    eval_interval: int | None = None
    name: str | None = None


def train(agents, data, config, members, start: int, last_step: int, out: setup.Outputs, phase: Phase = Phase()):
    """Offline training from step `start` to `last_step`, all members (seeds x sweep points,
    harness/sweep.py) at once: `steps_per_call` updates per compiled call (`update_n`: a
    `lax.scan` of sample + fused update), then, between calls, the NaN guard, train.csv rows,
    an evaluation, a checkpoint ({"agents", "step", "eval_seconds"}), and the stop signal.
    Returns the trained agents."""
    k, eval_interval = config.steps_per_call, phase.eval_interval or config.eval_interval
    seeds, hyper = members.seeds, members.points if members.fields else None
    desc = phase.name or (config.algo if len(seeds) == 1 else
                          f"{config.algo} x{len(seeds)} {'members' if members.fields else 'seeds'}")
    with tqdm(total=last_step, initial=start, unit="step", desc=desc, dynamic_ncols=True,
              disable=jax.process_index() != 0) as bar:
        for step in range(start + k, last_step + 1, k):
            agents, metrics = multiseed.update_n(agents, data, k, config.batch_size)
            stops.check_finite(step, step - k + 1, agents, metrics, out.checkpointer, members)
            bar.update(k)
            if step % config.log_interval == 0:
                out.writer.write_seeds("train", step, seeds, multiseed.fetch(metrics), phase.train_columns, hyper)
            if out.evaluator.due(step, eval_interval, last_step):
                columns = out.evaluator.evaluate(agents, step)
                out.writer.write_seeds("eval", step, seeds, columns, phase.eval_columns, hyper)
                bar.set_postfix(score=f"{out.evaluator.score(columns):.1f}")
            if out.checkpointer.due(step, config.checkpoint_interval, last_step) or out.signals.name:
                path = rundir.save(out.checkpointer, step, {"agents": agents, "step": step,
                                                            "eval_seconds": out.evaluator.seconds, **phase.checkpoint})
                out.signals.stop_if_asked(step, path)
    return agents


def main(argv):
    cli.check_no_arguments(argv)
    began = time.perf_counter()
    run = setup.start(FLAGS, check=algorithms.check_intervals)
    config, members = run.config, run.members
    agents = run.create_agents()
    with run.outputs({"agents": agents, "step": 0, "eval_seconds": 0.0}) as (out, state):
        start = 0
        if state is not None:
            agents, start = multiseed.shard_seeds(state["agents"], run.mesh), int(state["step"])
        data = multiseed.replicate(run.source.data, run.mesh)
        agents = train(agents, data, config, members, start, config.max_steps, out)
        rundir.finish(run.workdir, agents, out.writer.rows.get("eval", []), config.max_steps,
                      time.perf_counter() - began, out.evaluator.seconds, sweep_fields=members.fields)
    if FLAGS.video:  # last: the results are saved whatever rendering does
        out.evaluator.video(agents, config.max_steps, run.workdir)


if __name__ == "__main__":
    cli.run(main, FLAGS)
