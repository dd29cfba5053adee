"""Offline training of IQL on a Minari dataset or a D4RL-format file.

    python train_offline.py          # IQL on local/hopper/medium-v0, built from the shipped policy if needed
    python train_offline.py --config=configs/iql_mujoco.py --dataset=mujoco/hopper/medium-v0 \
        --workdir=runs/hopper-medium --seed=0
    python train_offline.py --config=configs/iql_mujoco.py --dataset=path/to/hopper-medium-v2.hdf5 \
        --env_name=Hopper-v5

    python train_offline.py --num_seeds=8     # seeds 0..7 in one process, sharded over devices

Writes to --workdir: config.json, train.csv, eval.csv (a row per seed), tb/ (TensorBoard),
agent.msgpack (the final agents, stacked on a seed axis) and summary.json. Algorithm details live in learner.py; this script only wires
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
flags.DEFINE_integer("num_seeds", 1, "Train seeds seed .. seed+num_seeds-1 together in this process.", flag_values=FLAGS)
flags.DEFINE_integer("num_devices", 0, "Devices to split the seeds over (0: as many as divide num_seeds).",
                     flag_values=FLAGS)
flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize() first (multi-host jobs).", flag_values=FLAGS)
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
    if FLAGS.num_seeds < 1:
        _fail(f"--num_seeds must be >= 1, got {FLAGS.num_seeds}")
    logging.set_verbosity(logging.WARNING)  # absl INFO would echo JAX's backend probing
    if FLAGS.num_seeds > 1 and "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
        # On a CPU-only machine, one host device per core trains seeds side by side (no effect
        # on GPU/TPU devices, and none once JAX has started, e.g. in tests).
        import multiseed

        count = multiseed.num_local_cpu_devices(FLAGS.num_seeds)
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={count}"
    # Heavy imports after flag parsing, so `--help` and flag errors are instant.
    import time

    import jax
    import numpy as np
    from tqdm import tqdm

    import collect
    import dataset as dataset_lib
    import evaluation
    import multiseed
    import run_outputs
    from learner import IQLLearner

    if FLAGS.distributed:
        jax.distributed.initialize()
    is_main = jax.process_index() == 0
    agent_classes = {"iql": IQLLearner}
    config = FLAGS.config
    if config.algo not in agent_classes:
        _fail(f"config.algo={config.algo!r} is not one of {sorted(agent_classes)}")
    check_loop_config(config)
    seeds = [FLAGS.seed + i for i in range(FLAGS.num_seeds)]
    try:
        mesh = multiseed.make_mesh(len(seeds), FLAGS.num_devices)
    except ValueError as e:
        _fail(str(e))

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
        make_env = lambda: evaluation.make_env(FLAGS.env_name)  # noqa: E731
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
        f"reference returns {ref_min} / {ref_max}; {len(seeds)} seed(s) on {mesh.devices.size} "
        f"{jax.devices()[0].platform} device(s); writing to {workdir}"
    )
    if is_main:
        run_outputs.write_json(os.path.join(workdir, "config.json"), {
            "config": config.to_dict(),
            "flags": {"dataset": FLAGS.dataset, "seed": FLAGS.seed, "num_seeds": FLAGS.num_seeds,
                      "env_name": FLAGS.env_name, "workdir": workdir},
            "dataset": {"size": data.size, "episodes": info.num_episodes, "reward_scale": info.reward_scale,
                        "reward_shift": info.reward_shift, "ref_min_score": ref_min, "ref_max_score": ref_max},
            "devices": [str(d) for d in mesh.devices.flat],
            "command": " ".join(sys.argv),
        })

    # Seed s: key(s) -> (agent key, eval key), the same whether it trains alone or with others.
    eval_keys = [jax.random.split(jax.random.key(s))[1] for s in seeds]
    example_obs, example_act = data.observations[0], data.actions[0]

    def create(key):
        return agent_classes[config.algo].create(jax.random.split(key)[0], example_obs, example_act, config)

    try:
        agents = multiseed.create_agents(create, seeds, mesh)
    except ValueError as e:
        _fail(str(e))
    data = multiseed.replicate(data, mesh)
    writer = run_outputs.MetricsWriter(workdir, tensorboard=config.tensorboard) if is_main else None
    episodes = config.eval_episodes

    def run_evaluation(step: int) -> list[dict]:
        # Episode seeds derive from each seed's eval key and the step; all seeds' episodes run
        # side by side, one batched policy call per env step.
        env_seeds = []
        for key in eval_keys:
            base = int(jax.random.randint(jax.random.fold_in(key, step), (), 0, 2**30))
            env_seeds += [base + j for j in range(episodes)]
        acting = agents if jax.process_count() == 1 else jax.device_put(multiseed.fetch(agents), jax.local_devices()[0])

        def policy(obs):
            actions = multiseed.sample_actions(acting, obs.reshape(len(seeds), episodes, -1), eval_keys[0])
            return np.asarray(actions).reshape(len(seeds) * episodes, -1)

        returns = evaluation.evaluate(policy, make_env, len(env_seeds), env_seeds)["returns"]
        rows = []
        for seed, seed_returns in zip(seeds, returns.reshape(len(seeds), episodes)):
            mean = float(seed_returns.mean())
            score = evaluation.normalized_score(mean, ref_min, ref_max)
            rows.append({"return": mean, "normalized_score": None if score is None else float(score),
                         "return_std": float(seed_returns.std())})
            writer.write("eval", step, seed, rows[-1])
        return rows

    steps, eval_seconds, start = config.steps_per_call, 0.0, time.perf_counter()
    desc = config.algo if len(seeds) == 1 else f"{config.algo} x{len(seeds)} seeds"
    with tqdm(total=config.max_steps, unit="step", dynamic_ncols=True, desc=desc, disable=not is_main) as bar:
        for step in range(steps, config.max_steps + 1, steps):
            agents, metrics = multiseed.update_n(agents, data, steps, config.batch_size)
            bar.update(steps)
            if step % config.log_interval == 0:
                metrics = multiseed.fetch(metrics)  # {name: (num_seeds,)}
                bad = sorted(k for k, v in metrics.items() if not np.all(np.isfinite(v)))
                if is_main:
                    for i, seed in enumerate(seeds):
                        writer.write("train", step, seed, {k: float(v[i]) for k, v in metrics.items()})
                if bad:
                    _fail(f"non-finite training metrics at step {step}: {bad}")
            if episodes > 0 and (step % config.eval_interval == 0 or step == config.max_steps):
                tic = time.perf_counter()
                if is_main:
                    rows = run_evaluation(step)
                    shown = [r["normalized_score"] if r["normalized_score"] is not None else r["return"] for r in rows]
                    bar.set_postfix(score=f"{np.mean(shown):.1f}")
                eval_seconds += time.perf_counter() - tic
    wall = time.perf_counter() - start

    if is_main:
        run_outputs.save_pytree(os.path.join(workdir, "agent.msgpack"), multiseed.fetch(agents))
        summary = run_outputs.summarize(writer.rows.get("eval", []))
        summary.update(steps=config.max_steps, wall_time_s=wall, eval_time_fraction=eval_seconds / wall,
                       updates_per_s_per_seed=config.max_steps / (wall - eval_seconds))
        run_outputs.write_json(os.path.join(workdir, "summary.json"), summary)
        writer.close()
        if summary.get("metric"):
            print(f"final {summary['metric']}: {summary['last_mean']:.2f} +- {summary['last_std']:.2f} "
                  f"(best {summary['best_mean']:.2f}); {wall:.0f} s, {100 * eval_seconds / wall:.1f}% in evaluation")


if __name__ == "__main__":
    cli.run(main, FLAGS)
