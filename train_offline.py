"""Offline training of IQL on a Minari dataset or a D4RL-format file.

    python train_offline.py          # IQL on local/hopper/medium-v0, built from the shipped policy if needed
    python train_offline.py --config=configs/iql_mujoco.py --dataset=mujoco/hopper/medium-v0 \
        --workdir=runs/hopper-medium --seed=0
    python train_offline.py --config=configs/iql_mujoco.py --dataset=path/to/hopper-medium-v2.hdf5 \
        --env_name=Hopper-v5

    python train_offline.py --num_seeds=8     # seeds 0..7 in one process, sharded over devices

Writes to --workdir: config.json, train.csv, eval.csv (a row per seed), tb/ (TensorBoard),
checkpoints/ (every checkpoint_interval steps, on SIGTERM/SIGINT and at the end), agent.msgpack
(the final agents, stacked on a seed axis) and summary.json. Running the same command again
with the same --workdir resumes from the newest checkpoint, exactly where it stopped. Algorithm details live in learner.py; this script only wires
data, agent, loop, evaluation and logging together.
"""

import os

from absl import flags

import cli
import experiment

FLAGS = flags.FlagValues()  # this script's own flags (see cli.py)
experiment.define_run_flags(FLAGS)
cli.define_config("config", os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "iql_mujoco.py"),
                  "Config file, optionally with a variant: configs/iql_mujoco.py:smoke.", FLAGS)


def main(argv):
    if len(argv) > 1:
        raise cli.UserError(f"unexpected positional arguments: {argv[1:]}")
    if FLAGS.num_seeds < 1:
        raise cli.UserError(f"--num_seeds must be >= 1, got {FLAGS.num_seeds}")
    experiment.request_cpu_devices(FLAGS.num_seeds)
    # Heavy imports after flag parsing, so `--help` and flag errors are instant.
    from tqdm import tqdm

    import multiseed
    from idql import IDQLLearner
    from learner import IQLLearner

    experiment.init_distributed(FLAGS.distributed)
    config = FLAGS.config
    experiment.check_intervals(config)
    exp = experiment.Experiment.setup(FLAGS, config, {"iql": IQLLearner, "idql": IDQLLearner})
    agents = exp.create_agents()
    start = 0
    state = exp.restore({"agents": agents, "step": 0})
    if state is not None:
        agents, start = multiseed.shard_seeds(state["agents"], exp.mesh), int(state["step"])

    steps = config.steps_per_call
    desc = config.algo if len(exp.seeds) == 1 else f"{config.algo} x{len(exp.seeds)} seeds"
    with tqdm(total=config.max_steps, initial=start, unit="step", dynamic_ncols=True, desc=desc,
              disable=not exp.is_main) as bar:
        for step in range(start + steps, config.max_steps + 1, steps):
            agents, metrics = multiseed.update_n(agents, exp.data, steps, config.batch_size)
            exp.check_finite(step, agents, metrics)
            bar.update(steps)
            if step % config.log_interval == 0:
                exp.log_train(step, metrics)
            if exp.due(step, config.eval_interval, config.max_steps):
                bar.set_postfix(score=f"{exp.evaluate(agents, step):.1f}")
            exp.checkpoint(step, {"agents": agents, "step": step}, config.max_steps)
    exp.finish(agents, config.max_steps)


if __name__ == "__main__":
    cli.run(main, FLAGS)
