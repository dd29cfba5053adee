"""Offline training of IQL (or IDQL) on a Minari dataset or a D4RL-format file.

    python train_offline.py          # IQL on local/hopper/medium-v0, built from the shipped policy if needed
    python train_offline.py --config=configs/iql_mujoco.py --dataset=mujoco/hopper/medium-v0 \
        --workdir=runs/hopper-medium --seed=0
    python train_offline.py --config=configs/iql_mujoco.py --dataset=path/to/hopper-medium-v2.hdf5 \
        --env_name=Hopper-v4

    python train_offline.py --num_seeds=8     # seeds 0..7 in one process, sharded over devices
    python train_offline.py --config=configs/iql_antmaze.py --dataset=local/d4rl-antmaze/umaze-v0 \
        --sweep=expectile=0.7,0.9 --sweep=beta=0,10 --num_seeds=2   # a 2 x 2 grid x 2 seeds, one program

Writes to --workdir: config.json, train.csv, eval.csv (a row per seed), tb/ (TensorBoard),
checkpoints/ (every checkpoint_interval steps, on SIGTERM/SIGINT and at the end), agent.msgpack
(the final agents, stacked on a seed axis) and summary.json. Running the same command again
with the same --workdir resumes from the newest checkpoint, exactly where it stopped.
The algorithm lives in learner.py / idql.py; `train` below is the loop.
"""

import os
import time

import jax
from absl import flags
from tqdm import tqdm

from harness import algorithms, cli, devices, evaluate, multiseed, outputs, rundir, sources, stops, sweep

FLAGS = flags.FlagValues()  # this script's own flags (see harness/cli.py)
cli.define_run_flags(FLAGS)
cli.define_config("config", os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "iql_mujoco.py"),
                  "Config file, optionally with a variant: configs/iql_mujoco.py:smoke.", FLAGS)


def train(agents, data, config, members, start: int, last_step: int, *, writer, checkpointer, evaluator,
          signals, state_extra=None, log_extra=None, eval_extra=None, eval_interval=None, desc="offline"):
    """Offline training from step `start` to `last_step`, all members (seeds x sweep points,
    harness/sweep.py) at once: `steps_per_call`
    updates per compiled call (`update_n`: a `lax.scan` of sample + fused update), then, between
    calls, the NaN guard, train.csv rows, an evaluation, a checkpoint, and the stop signal.

    Checkpoints hold {"agents", "step", "eval_seconds", **state_extra}; `log_extra` / `eval_extra`
    are extra columns of train.csv / eval.csv rows. Returns the trained agents."""
    k, eval_interval = config.steps_per_call, eval_interval or config.eval_interval
    seeds, hyper = members.seeds, members.points if members.fields else None
    with tqdm(total=last_step, initial=start, unit="step", desc=desc, dynamic_ncols=True,
              disable=jax.process_index() != 0) as bar:
        for step in range(start + k, last_step + 1, k):
            agents, metrics = multiseed.update_n(agents, data, k, config.batch_size)
            stops.check_finite(step, step - k + 1, agents, metrics, checkpointer, members)
            bar.update(k)
            if step % config.log_interval == 0:
                writer.write_seeds("train", step, seeds, multiseed.fetch(metrics), log_extra, hyper)
            if evaluator.due(step, eval_interval, last_step):
                columns = evaluator.evaluate(agents, step)
                writer.write_seeds("eval", step, seeds, columns, eval_extra, hyper)
                bar.set_postfix(score=f"{evaluator.score(columns):.1f}")
            if checkpointer.due(step, config.checkpoint_interval, last_step) or signals.name:
                path = rundir.save(checkpointer, step, {"agents": agents, "step": step,
                                                        "eval_seconds": evaluator.seconds, **(state_extra or {})})
                signals.stop_if_asked(step, path)
    return agents


def main(argv):
    cli.check_no_arguments(argv)
    devices.start_jax(FLAGS.num_seeds, FLAGS.distributed, sweep.num_points(FLAGS.sweep))
    config, began = FLAGS.config, time.perf_counter()
    algorithm = algorithms.algorithm_for(config)
    algorithms.check_intervals(config)
    members = algorithms.run_members(algorithm, config, FLAGS.sweep, FLAGS.seed, FLAGS.num_seeds)
    seeds = members.seeds  # one per member: each grid point has the seeds seed .. seed + num_seeds - 1
    mesh = multiseed.run_mesh(len(seeds), FLAGS.num_devices)
    workdir, resuming = rundir.open_workdir(FLAGS, config)
    source = sources.load(FLAGS, config)
    grid = f" x {len(members.grid())} sweep points" if members.fields else ""
    print(f"{source.describe()}; {FLAGS.num_seeds} seed(s){grid} on {mesh.devices.size} {jax.devices()[0].platform} "
          f"device(s); writing to {workdir}", *source.notes, sep="\n")
    if not resuming and jax.process_index() == 0:
        rundir.write_config(workdir, FLAGS, config, source, mesh)

    data = multiseed.replicate(source.data, mesh)
    agents = algorithms.create_agents(algorithm, config, source.data, members, mesh)
    checkpointer = outputs.Checkpointer(workdir, config.keep_checkpoints)
    state = rundir.restore(checkpointer, {"agents": agents, "step": 0, "eval_seconds": 0.0})
    start = 0 if state is None else int(state["step"])
    if state is not None:
        agents = multiseed.shard_seeds(state["agents"], mesh)
    evaluator = evaluate.Evaluator(source.make_env, seeds, config.eval_episodes, source.ref_min, source.ref_max,
                                   config.get("eval_temperature"), 0.0 if state is None else float(state["eval_seconds"]))

    with outputs.MetricsWriter(workdir, config.tensorboard, resume_step=start if state is not None else None,
                               enabled=jax.process_index() == 0) as writer, stops.StopSignals() as signals:
        desc = config.algo if len(seeds) == 1 else f"{config.algo} x{len(seeds)} {'members' if grid else 'seeds'}"
        agents = train(agents, data, config, members, start, config.max_steps, writer=writer, checkpointer=checkpointer,
                       evaluator=evaluator, signals=signals, desc=desc)
        rundir.finish(workdir, agents, writer.rows.get("eval", []), config.max_steps, time.perf_counter() - began,
                      evaluator.seconds, sweep_fields=members.fields)
    if FLAGS.video:  # last: the results are saved whatever rendering does
        evaluator.video(agents, config.max_steps, workdir)


if __name__ == "__main__":
    cli.run(main, FLAGS)
