"""Make D4RL-style Minari datasets for a Gymnasium env from SAC behavior snapshots, offline.

    python -m tools.collect --env=Hopper-v5                      # the 5 kinds, from the shipped policies
    python -m tools.collect --env=Hopper-v5 --behavior=runs/behavior/Hopper-v5 --datasets=medium,expert
    python -m tools.collect --env=Hopper-v5 --behavior=runs/behavior/Hopper-v5 --export=behavior/policies/hopper
    python -m tools.collect --env=pointmaze --datasets=umaze,medium-diverse        # maze sets (behavior/mazes.py)
    python -m tools.collect --env=antmaze --datasets=umaze,medium-play             # the shipped goal-reaching Ant
    python -m tools.collect --env=d4rl-antmaze --datasets=umaze,medium-play        # D4RL's task (d4rl_datasets.py)
    python -m tools.collect --env=d4rl-antmaze --evaluate_controller=100           # its controller's success
    python -m tools.collect --env=behavior.goal_ant:GoalReachingAnt-v0 --behavior=runs/behavior/goal_ant \
        --export=behavior/policies/goal_ant --export_step=460000                  # how that Ant was shipped

The kinds (random, medium, medium-replay, expert, medium-expert) and how each is made are in
behavior/datasets.py.
"""

from absl import flags

from behavior import d4rl_datasets, mazes
from behavior.datasets import KINDS, SHIPPED, Behavior, make_datasets, shipped_dir
from harness import cli

FLAGS = flags.FlagValues()  # this script's own flags (see harness/cli.py)
flags.DEFINE_string("env", "Hopper-v5", "Gymnasium environment id, or antmaze / pointmaze for the maze sets "
                    "(kinds <maze>[-diverse|-play], maze in umaze, medium, large).", flag_values=FLAGS)
flags.DEFINE_string("behavior", None, f"Behavior folder (default: the shipped one, {SHIPPED}/<env>).", flag_values=FLAGS)
flags.DEFINE_list("datasets", list(KINDS), f"Which datasets to make, from {KINDS}.", flag_values=FLAGS)
flags.DEFINE_string("namespace", "local", "Minari namespace of the new dataset ids.", flag_values=FLAGS)
flags.DEFINE_integer("steps", 1_000_000, "Environment steps per policy (medium-expert records twice this).", flag_values=FLAGS)
flags.DEFINE_integer("seed", 0, "Seed; every random draw derives from it.", flag_values=FLAGS)
flags.DEFINE_integer("ref_episodes", 50, "Episodes averaged for ref_min_score / ref_max_score.", flag_values=FLAGS)
flags.DEFINE_integer("num_envs", 16, "Envs stepped side by side (one batched policy call per step).", flag_values=FLAGS)
flags.DEFINE_bool("overwrite", False, "Replace datasets that already exist (otherwise they are kept).", flag_values=FLAGS)
flags.DEFINE_integer("evaluate_controller", 0, "d4rl-antmaze only: instead of collecting, run the planner + "
                     "controller on D4RL's evaluation tasks for this many episodes each, with and without the "
                     "data's action noise, and print success and flip rates.", flag_values=FLAGS)
flags.DEFINE_integer("behavior_step", None, "d4rl-antmaze only: the controller snapshot (default: the best).",
                     flag_values=FLAGS)
flags.DEFINE_string("export", None, "Instead of collecting, copy the snapshots collect needs to this folder.", flag_values=FLAGS)
flags.DEFINE_integer("export_step", None, "With --export: copy only this snapshot.", flag_values=FLAGS)


def d4rl_antmaze() -> None:
    behavior = FLAGS.behavior or d4rl_datasets.CONTROLLER
    if FLAGS.evaluate_controller:
        print(f"controller {behavior} (snapshot {FLAGS.behavior_step or 'best'}), {FLAGS.evaluate_controller} "
              "episodes per task")
        for maze in ("umaze", "medium", "large"):
            for noise in (0.0, d4rl_datasets.ACTION_NOISE):
                act = d4rl_datasets.controller(behavior, noise, FLAGS.behavior_step)
                result = d4rl_datasets.success_rate(maze, act, FLAGS.evaluate_controller, FLAGS.seed)
                print(f"{maze:7s} noise {noise:.1f}: success {100 * result['success']:5.1f}%, "
                      f"flipped {100 * result['flip_rate']:5.1f}%")
        return
    kinds = [] if FLAGS.datasets == list(KINDS) else FLAGS.datasets
    if not kinds:
        raise cli.UserError(f"--env=d4rl-antmaze: name the --datasets, from {d4rl_datasets.KINDS}")
    ids = [d4rl_datasets.make_dataset(kind, FLAGS.steps, FLAGS.seed, FLAGS.num_envs, FLAGS.behavior, FLAGS.overwrite,
                                      step=FLAGS.behavior_step) for kind in kinds]
    print("datasets: " + ", ".join(ids))


def main(argv):
    del argv
    if FLAGS.env == "d4rl-antmaze":
        return d4rl_antmaze()
    if FLAGS.env in mazes.FAMILIES:
        kinds = [] if FLAGS.datasets == list(KINDS) else FLAGS.datasets
        if not kinds:
            raise cli.UserError(f"--env={FLAGS.env}: name the --datasets, e.g. umaze,umaze-diverse,medium-play,"
                                "medium-diverse")
        ids = [mazes.make_dataset(FLAGS.env, kind, FLAGS.namespace, FLAGS.steps, FLAGS.seed, FLAGS.num_envs,
                                  FLAGS.behavior, FLAGS.overwrite) for kind in kinds]
        print("datasets: " + ", ".join(ids))
        return
    behavior = Behavior(FLAGS.behavior or shipped_dir(FLAGS.env))
    if FLAGS.export:
        behavior.export(FLAGS.export, FLAGS.export_step)
        print(f"exported {FLAGS.env} behavior snapshots to {FLAGS.export}")
        return
    ids = make_datasets(FLAGS.env, behavior, FLAGS.datasets, FLAGS.namespace, FLAGS.steps, FLAGS.seed,
                        FLAGS.ref_episodes, FLAGS.overwrite, FLAGS.num_envs)
    print("datasets: " + ", ".join(ids))


if __name__ == "__main__":
    cli.run(main, FLAGS)
