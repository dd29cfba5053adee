"""Offline training of IQL (or IDQL) on a Minari dataset or a D4RL-format file.

    python train_offline.py          # IQL on local/hopper/medium-v0, built from the shipped policy if needed
    python train_offline.py --config=configs/iql_mujoco.py --dataset=mujoco/hopper/medium-v0 \
        --workdir=runs/hopper-medium --seed=0
    python train_offline.py --config=configs/iql_mujoco.py --dataset=path/to/hopper-medium-v2.hdf5 \
        --env_name=Hopper-v4

    python train_offline.py --num_seeds=8     # seeds 0..7 in one process, sharded over devices

Writes to --workdir: config.json, train.csv, eval.csv (a row per seed), tb/ (TensorBoard),
checkpoints/ (every checkpoint_interval steps, on SIGTERM/SIGINT and at the end), agent.msgpack
(the final agents, stacked on a seed axis) and summary.json. Running the same command again
with the same --workdir resumes from the newest checkpoint, exactly where it stopped.
Algorithm details live in learner.py / idql.py; the loop, evaluation and logging in
harness/experiment.py.
"""

import os

from absl import flags

from harness import cli, experiment, multiseed

FLAGS = flags.FlagValues()  # this script's own flags (see harness/cli.py)
experiment.define_run_flags(FLAGS)
cli.define_config("config", os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "iql_mujoco.py"),
                  "Config file, optionally with a variant: configs/iql_mujoco.py:smoke.", FLAGS)


def main(argv):
    if len(argv) > 1:
        raise cli.UserError(f"unexpected positional arguments: {argv[1:]}")
    experiment.start_jax(FLAGS)
    config = FLAGS.config
    experiment.check_intervals(config)
    with experiment.Experiment.setup(FLAGS, config) as exp:
        agents, start = exp.create_agents(), 0
        state = exp.restore({"agents": agents, "step": 0})
        if state is not None:
            agents, start = multiseed.shard_seeds(state["agents"], exp.mesh), int(state["step"])
        desc = config.algo if len(exp.seeds) == 1 else f"{config.algo} x{len(exp.seeds)} seeds"
        agents = exp.offline_loop(agents, start, config.max_steps, desc=desc)
        exp.finish(agents, config.max_steps)


if __name__ == "__main__":
    cli.run(main, FLAGS)
