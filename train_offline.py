"""Offline training of IQL on a Minari dataset or a D4RL-format file.

    python train_offline.py          # IQL on local/hopper/medium-v0, built from the shipped policy if needed
    python train_offline.py --config=configs/iql_mujoco.py --dataset=mujoco/hopper/medium-v0 \
        --workdir=runs/hopper-medium --seed=0
    python train_offline.py --config=configs/iql_mujoco.py --dataset=path/to/hopper-medium-v2.hdf5 \
        --env_name=Hopper-v5

Writes to --workdir: config.json, train.csv, eval.csv, tb/ (TensorBoard), agent.msgpack (the
final agent) and summary.json. Algorithm details live in learner.py; this script only wires
data, agent, loop, evaluation and logging together.
"""

import os
import sys

from absl import flags, logging
from ml_collections import config_flags

import cli

FLAGS = flags.FlagValues()  # this script's own flags (see cli.py)
flags.DEFINE_string("dataset", "local/hopper/medium-v0",
                    "Minari dataset id, or a path to a .hdf5/.h5/.npz file. Ids local/<env>/<kind>-v0 "
                    "with shipped behavior policies (see collect.py) are built on first use.",
                    flag_values=FLAGS)
flags.DEFINE_string("workdir", None, "Folder for everything the run writes (default: runs/<algo>_<dataset>_seed<seed>).",
                    flag_values=FLAGS)
flags.DEFINE_integer("seed", 0, "Seed of the run; every random draw derives from it.", flag_values=FLAGS)
flags.DEFINE_string("env_name", None, "Gymnasium id of the evaluation env (needed for .hdf5/.npz datasets).",
                    flag_values=FLAGS)
config_flags.DEFINE_config_file(
    "config",
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "iql_mujoco.py"),
    "Config file, optionally with a variant: configs/iql_mujoco.py:smoke.",
    lock_config=True,
    flag_values=FLAGS,
)


def _fail(message: str) -> None:
    raise cli.UserError(message)


def check_loop_config(config) -> None:
    for name in ("batch_size", "max_steps", "steps_per_call", "log_interval", "eval_interval"):
        if config[name] <= 0:
            _fail(f"config.{name} must be > 0, got {config[name]}")
    if config.eval_episodes < 0:
        _fail(f"config.eval_episodes must be >= 0, got {config.eval_episodes}")
    for name in ("max_steps", "log_interval", "eval_interval"):
        if config[name] % config.steps_per_call:
            _fail(
                f"config.{name}={config[name]} is not a multiple of config.steps_per_call="
                f"{config.steps_per_call}: the loop logs and evaluates between compiled calls"
            )


def default_workdir(config, dataset: str, seed: int) -> str:
    name = os.path.splitext(os.path.basename(dataset))[0] if dataset.endswith((".hdf5", ".h5", ".npz")) else dataset
    return os.path.join("runs", f"{config.algo}_{name.replace('/', '_')}_seed{seed}")


def main(argv):
    if len(argv) > 1:
        _fail(f"unexpected positional arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)  # absl INFO would echo JAX's backend probing
    # Heavy imports after flag parsing, so `--help` and flag errors are instant.
    import jax
    import numpy as np
    from tqdm import tqdm

    import collect
    import dataset as dataset_lib
    import evaluation
    import run_outputs
    from learner import IQLLearner

    agents = {"iql": IQLLearner}
    config = FLAGS.config
    if config.algo not in agents:
        _fail(f"config.algo={config.algo!r} is not one of {sorted(agents)}")
    check_loop_config(config)

    workdir = FLAGS.workdir or default_workdir(config, FLAGS.dataset, FLAGS.seed)
    if os.path.exists(os.path.join(workdir, "eval.csv")) or os.path.exists(os.path.join(workdir, "train.csv")):
        _fail(f"{workdir} already holds a run (train.csv/eval.csv); choose another --workdir or move it away")
    os.makedirs(workdir, exist_ok=True)

    try:
        if not dataset_lib.is_file_source(FLAGS.dataset):
            collect.ensure_local_dataset(FLAGS.dataset)
        data, info = dataset_lib.load_dataset(FLAGS.dataset, config.reward_transform)
    except dataset_lib.DatasetError as e:
        _fail(str(e))
    if config.batch_size > data.size:
        _fail(f"config.batch_size={config.batch_size} is larger than the dataset ({data.size} transitions)")
    ref_min = config.ref_min_score if config.ref_min_score is not None else info.ref_min_score
    ref_max = config.ref_max_score if config.ref_max_score is not None else info.ref_max_score

    make_env = info.make_env
    if FLAGS.env_name:
        import gymnasium as gym

        make_env = lambda: gym.make(FLAGS.env_name)  # noqa: E731
    obs_dim, action_dim = data.observations.shape[1], data.actions.shape[1]
    if config.eval_episodes > 0:
        if make_env is None:
            _fail(f"{FLAGS.dataset} names no evaluation env: pass --env_name (e.g. Hopper-v5) or set config.eval_episodes=0")
        try:
            env = make_env()
            evaluation.check_env(env, obs_dim, action_dim)
            env.close()
        except Exception as e:  # unknown env id, missing extras, wrong shapes
            _fail(f"evaluation env: {type(e).__name__}: {e}")

    print(
        f"{info.name}: {data.size} transitions, {info.num_episodes} episodes, obs {obs_dim}, "
        f"act {action_dim}; rewards x{info.reward_scale:.4g} {info.reward_shift:+g}; "
        f"reference returns {ref_min} / {ref_max}; writing to {workdir}"
    )
    run_outputs.write_json(
        os.path.join(workdir, "config.json"),
        {
            "config": config.to_dict(),
            "flags": {"dataset": FLAGS.dataset, "seed": FLAGS.seed, "env_name": FLAGS.env_name, "workdir": workdir},
            "dataset": {"size": data.size, "episodes": info.num_episodes, "reward_scale": info.reward_scale,
                        "reward_shift": info.reward_shift, "ref_min_score": ref_min, "ref_max_score": ref_max},
            "command": " ".join(sys.argv),
        },
    )

    key = jax.random.key(FLAGS.seed)
    agent_key, eval_key = jax.random.split(key)
    try:
        agent = agents[config.algo].create(agent_key, data.observations[0], data.actions[0], config)
    except ValueError as e:
        _fail(str(e))
    writer = run_outputs.MetricsWriter(workdir, tensorboard=config.tensorboard)

    def run_evaluation(step: int) -> dict:
        # Episode seeds derive from --seed and the step, so every evaluation is reproducible.
        seed = int(jax.random.randint(jax.random.fold_in(eval_key, step), (), 0, 2**30))
        policy = lambda obs: agent.sample_actions(obs, eval_key, 0.0)  # noqa: E731
        result = evaluation.evaluate(policy, make_env, config.eval_episodes, seed)
        score = evaluation.normalized_score(result["return"], ref_min, ref_max)
        scalars = {"return": result["return"], "normalized_score": score,
                   "return_std": result["return_std"], "episode_length": result["length"]}
        writer.write("eval", step, FLAGS.seed, scalars)
        return scalars

    steps = config.steps_per_call
    with tqdm(total=config.max_steps, unit="update", dynamic_ncols=True, desc=config.algo) as bar:
        for step in range(steps, config.max_steps + 1, steps):
            agent, metrics = agent.update_n(data, steps, config.batch_size)
            bar.update(steps)
            if step % config.log_interval == 0:
                metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
                if not all(np.isfinite(v) for v in metrics.values()):
                    bad = [k for k, v in metrics.items() if not np.isfinite(v)]
                    writer.write("train", step, FLAGS.seed, metrics)
                    _fail(f"non-finite training metrics at step {step}: {bad}")
                writer.write("train", step, FLAGS.seed, metrics)
            if config.eval_episodes > 0 and (step % config.eval_interval == 0 or step == config.max_steps):
                scalars = run_evaluation(step)
                shown = scalars["normalized_score"] if scalars["normalized_score"] is not None else scalars["return"]
                bar.set_postfix(score=f"{shown:.1f}")

    run_outputs.save_pytree(os.path.join(workdir, "agent.msgpack"), agent)
    summary = run_outputs.summarize(writer.rows.get("eval", []))
    summary["steps"] = config.max_steps
    run_outputs.write_json(os.path.join(workdir, "summary.json"), summary)
    writer.close()
    if summary.get("metric"):
        print(f"final {summary['metric']}: {summary['last_mean']:.2f} (best {summary['best_mean']:.2f})")


if __name__ == "__main__":
    cli.run(main, FLAGS)
