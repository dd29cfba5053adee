"""Offline -> online fine-tuning of IQL (or IDQL), on one step counter (the IQL paper, Section 5.3).

    python train_finetune.py --config=configs/iql_antmaze_finetune.py --dataset=D4RL/antmaze/umaze-v1
    python train_finetune.py --config=configs/iql_mujoco_finetune.py --dataset=local/hopper/medium-v0 \
        --config.pretrain_steps=200000 --config.online_steps=100000
    python train_finetune.py ... --init_from=runs/iql_local_hopper_medium-v0_seed0/agent.msgpack

Phase 1 (offline): `pretrain_steps` gradient steps on the dataset, the same loop as
train_offline.py (or none, with --init_from: agents saved by train_offline.py with the same
config and seeds). Phase 2 (online): `online_steps` environment steps per seed, acting with
the stochastic policy, each transition stored in a replay buffer seeded with the whole dataset
(or, with `mix_offline`, batches half offline, half online), rewards transformed exactly as
offline, `mask = 1 - terminated` (a time-limit truncation still bootstraps and ends the
episode), and `utd` gradient steps per environment step. The run's step counts the offline
gradient steps, then one per env step (the x-axis of both phases; eval.csv and train.csv also
carry `phase` and `env_steps` columns).
"""

import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags
from tqdm import tqdm

import train_offline
from dataset import DatasetError
from harness import algorithms, cli, multiseed, online, outputs, rundir, setup, stops
from replay_buffer import ReplayBuffer

FLAGS = flags.FlagValues()  # this script's own flags (see harness/cli.py)
cli.define_run_flags(FLAGS)
flags.DEFINE_string("init_from", None, "Skip the offline phase: start from this agent.msgpack of train_offline.py.",
                    flag_values=FLAGS)
cli.define_config("config", os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "iql_mujoco_finetune.py"),
                  "Config file, optionally with a variant: configs/iql_mujoco_finetune.py:smoke.", FLAGS)

OFFLINE_ROW = {"phase": "offline", "env_steps": 0}


# The fields fine-tuning reads besides the offline loop's (configs/iql_mujoco_finetune.py).
FINETUNE_FIELDS = ("pretrain_steps", "online_steps", "buffer_size", "utd", "mix_offline", "pretrain_eval_interval",
                   "online_batch_size", "start_training", "online_temperature")


def check_config(config) -> None:
    if "max_steps" in config:
        raise cli.UserError("config.max_steps is not read by fine-tuning: the actor's schedule spans "
                            "pretrain_steps + online_steps; set those instead")
    if config.pretrain_steps:
        algorithms.check_intervals(config, "pretrain_steps")
    for name in ("online_steps", "buffer_size", "utd", "eval_interval", "log_interval"):
        if config[name] <= 0:
            raise cli.UserError(f"config.{name} must be > 0, got {config[name]}")
    if config.pretrain_eval_interval is not None and (
            config.pretrain_eval_interval <= 0 or config.pretrain_eval_interval % config.steps_per_call):
        raise cli.UserError(f"config.pretrain_eval_interval={config.pretrain_eval_interval} must be a positive "
                            f"multiple of config.steps_per_call={config.steps_per_call}")
    if config.online_batch_size is not None and config.online_batch_size <= 0:
        raise cli.UserError(f"config.online_batch_size must be > 0, got {config.online_batch_size}")
    if config.start_training < 0 or config.online_temperature < 0:
        raise cli.UserError("config.start_training and config.online_temperature must be >= 0")


def checkpoint(agents, step: int, eval_seconds: float, online_state=None, offline_steps: int = 0,
               env_step: int = 0) -> dict:
    """The checkpoint's layout, the same to save and to restore into: the agents; in the online
    phase also every seed's OnlineState (replay buffer, episode statistics) and the counters."""
    state = {"agents": agents, "step": step, "online": int(online_state is not None), "eval_seconds": eval_seconds}
    if online_state is not None:
        state.update(offline_steps=offline_steps, env_step=env_step, online_state=online_state)
    return state


def checkpoint_template(agents, in_online: bool, num_seeds: int, obs_dim: int, action_dim: int) -> dict:
    """`checkpoint`'s structure for restoring (array shapes come from the file)."""
    if not in_online:
        return checkpoint(agents, 0, 0.0)
    state = online.OnlineState(multiseed.stack([ReplayBuffer.create(1, obs_dim, action_dim)] * num_seeds),
                               online.OnlineStats.create(np.zeros(num_seeds), np.zeros((num_seeds, online.RECENT))),
                               np.zeros((num_seeds, action_dim), np.float32))
    return checkpoint(agents, 0, 0.0, state)


# Config fields that shape an agent's networks or optimizer state: an agent saved with other
# values cannot be loaded into this run's.
AGENT_SHAPE_FIELDS = ("algo", "hidden_dims", "num_qs", "cosine_decay", "dropout_rate")


def saved_config_differences(agent_path: str, config) -> str:
    """'; it was trained with cosine_decay=True (this config: False), ...' from the config.json
    beside a saved agent, for the shape fields that differ; '' when there is none to read."""
    try:
        with open(os.path.join(os.path.dirname(os.path.abspath(agent_path)), "config.json")) as f:
            saved = json.load(f)["config"]
        fields = [k for k in rundir.config_changes(saved, config) if k in AGENT_SHAPE_FIELDS]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return ""
    if not fields:
        return ""
    diffs = ", ".join(f"{k}={saved.get(k)!r} (this config: {config.get(k)!r})" for k in fields)
    return f"; it was trained with {diffs}: pass the same values (e.g. --config.{fields[0]}=...)"


def offline_phase(run: setup.Run, out: setup.Outputs, agents, data, state: dict | None) -> tuple:
    """Phase 1: pretrain (train_offline.train, or load --init_from, or resume); returns
    (agents, offline steps done)."""
    config = run.config
    if state is not None:
        agents, step = multiseed.shard_seeds(state["agents"], run.mesh), int(state["step"])
        if int(state["online"]):
            return agents, int(state["offline_steps"])
    elif FLAGS.init_from:
        try:
            loaded = outputs.load_pytree(FLAGS.init_from, multiseed.fetch(agents))
        except (OSError, ValueError) as e:
            raise cli.UserError(f"--init_from: {e}{saved_config_differences(FLAGS.init_from, config)}") from e
        agents = multiseed.shard_seeds(loaded, run.mesh)
        step = int(multiseed.fetch(agents.actor.step)[0])
        print(f"starting from {FLAGS.init_from} (trained for {step} offline steps)")
        return agents, step
    else:
        step = 0
    if config.pretrain_steps:
        pretrain = train_offline.Phase(train_columns={**OFFLINE_ROW, "online_return": None}, eval_columns=OFFLINE_ROW,
                                       checkpoint={"online": 0}, eval_interval=config.pretrain_eval_interval,
                                       name="offline")
        agents = train_offline.train(agents, data, config, run.members, step, config.pretrain_steps, out, pretrain)
        step = config.pretrain_steps
    return agents, step


def online_start(run: setup.Run, state: dict | None) -> online.OnlineState:
    """Every seed's online state, sharded with the seeds: resumed, or a replay buffer seeded with
    the whole offline dataset (empty with `mix_offline`, whose batches take half from the
    dataset) and no episodes yet. Its actions are drawn once the envs have reset."""
    mesh, n = run.mesh, len(run.members.seeds)
    if state is not None and int(state["online"]):
        return multiseed.shard_seeds(state["online_state"], mesh)
    config, data = run.config, run.source.data
    scale, shift = run.source.info.reward_scale, run.source.info.reward_shift
    if config.mix_offline:
        single = ReplayBuffer.create(config.buffer_size, data.observations.shape[1], data.actions.shape[1], scale, shift)
    else:
        try:
            # From the host copy: the buffer is built on one device, then stacked and sharded per seed.
            single = ReplayBuffer.from_dataset(data, config.buffer_size, scale, shift)
        except DatasetError as e:
            raise cli.UserError(str(e)) from e
    stats = online.OnlineStats.create(np.zeros(n, np.int32), np.full((n, online.RECENT), np.nan))
    actions = np.zeros((n, data.actions.shape[1]), np.float32)
    return multiseed.shard_seeds(online.OnlineState(multiseed.stack([single] * n), stats, actions), mesh)


def online_phase(run: setup.Run, out: setup.Outputs, agents, data, offline_steps: int, state: dict | None):
    """Phase 2: `online_steps` env steps per seed (harness/online.py has the pieces of one); returns
    (agents, step, episodes per seed). The run's step counts on from the offline phase, one per
    env step, so logs, evaluations and checkpoints in this phase fall every `*_interval` env
    steps and are named by `offline_steps + env_step`."""
    config, seeds, mesh = run.config, run.members.seeds, run.mesh
    hyper = run.members.points if run.members.fields else None
    env_step = int(state["env_step"]) if state is not None and int(state["online"]) else 0
    online_state = online_start(run, state)
    streams = [multiseed.seed_streams(s) for s in seeds]
    act_keys = multiseed.shard_seeds(jnp.stack([st["acting"] for st in streams]), mesh)
    # Episodes start from seeds derived from the env-step count (a resumed run restarts the
    # episodes that a stop interrupted; the env's own state cannot be saved in general).
    env_seeds = [int(jax.random.randint(jax.random.fold_in(streams[i]["env_resets"], env_step), (), 0, 2**30))
                 for i in multiseed.local_seeds(mesh, len(seeds))]
    envs = online.HostEnvs(run.source.make_env, env_seeds)  # this process's seeds' envs
    update = online.compiled_update(mesh, config.utd, config.online_batch_size or config.batch_size,
                                    config.mix_offline)
    store_and_act = online.compiled_store_and_act(mesh, config.online_temperature)
    # The action for env step k + 1 is drawn with the seed's acting key folded with k.
    first = online.compiled_act(mesh, config.online_temperature)(agents, act_keys,
                                                                  multiseed.from_local_rows(envs.obs, mesh), env_step)
    online_state = online_state.replace(actions=first)
    metrics, checked_through = None, offline_steps + env_step  # the NaN guard's last checked step
    with tqdm(total=config.online_steps, initial=env_step, unit="env step", desc="online", dynamic_ncols=True,
              disable=jax.process_index() != 0) as bar:
        while env_step < config.online_steps:
            if env_step >= config.start_training:
                # Dispatched, not awaited: the seeds train while the host steps their envs.
                agents, metrics = update(agents, online_state.buffers, data)
            rows = envs.step(multiseed.local_rows(online_state.actions))
            env_step += 1
            online_state = store_and_act(online_state, agents, act_keys, multiseed.from_local_rows(rows, mesh),
                                         env_step)
            bar.update(1)
            step = offline_steps + env_step
            log = metrics is not None and env_step % config.log_interval == 0
            evaluate_now = out.evaluator.due(env_step, config.eval_interval, config.online_steps)
            save = out.checkpointer.due(env_step, config.checkpoint_interval, config.online_steps) or out.signals.name
            if not (log or evaluate_now or save):
                continue
            if metrics is not None:
                stops.check_finite(step, checked_through + 1, agents, metrics, out.checkpointer, run.members)
                checked_through = step
            extra = {"phase": "online", "env_steps": env_step}
            if log:
                stats = multiseed.fetch(online_state.stats)
                online_return = (float(np.mean(np.nanmean(stats.recent, axis=1))) if stats.episode_count.min() > 0
                                 else None)
                out.writer.write_seeds("train", step, seeds, multiseed.fetch(metrics),
                                       {**extra, "online_return": online_return}, hyper)
            if evaluate_now:
                columns = out.evaluator.evaluate(agents, step)
                out.writer.write_seeds("eval", step, seeds, columns, extra, hyper)
                bar.set_postfix(score=f"{out.evaluator.score(columns):.1f}")
            if save:
                path = rundir.save(out.checkpointer, step, checkpoint(agents, step, out.evaluator.seconds, online_state,
                                                                      offline_steps, env_step))
                out.signals.stop_if_asked(step, path)
    envs.close()
    return agents, offline_steps + env_step, multiseed.fetch(online_state.stats.episode_count)


def main(argv):
    cli.check_no_arguments(argv)
    began = time.perf_counter()
    loop_fields = tuple(f for f in algorithms.OFFLINE_FIELDS if f != "max_steps") + FINETUNE_FIELDS
    run = setup.start(FLAGS, loop_fields, check=check_config, prefix="finetune_", needs_env=True)
    config, members = run.config, run.members
    agents = run.create_agents()
    dims = (len(members.seeds), run.source.data.observations.shape[1], run.source.data.actions.shape[1])
    template = lambda raw: checkpoint_template(agents, bool(int(raw["online"])), *dims)  # noqa: E731
    with run.outputs(template) as (out, state):
        data = multiseed.replicate(run.source.data, run.mesh)
        agents, offline_steps = offline_phase(run, out, agents, data, state)
        agents, step, episodes = online_phase(run, out, run.algorithm.for_online_phase(agents), data, offline_steps,
                                              state)
        rundir.finish(run.workdir, agents, out.writer.rows.get("eval", []), step, time.perf_counter() - began,
                      out.evaluator.seconds, {"offline_steps": offline_steps, "online_env_steps": config.online_steps,
                                              "online_episodes_per_seed": [int(c) for c in episodes]},
                      sweep_fields=members.fields)
    if FLAGS.video:  # last: the results are saved whatever rendering does
        out.evaluator.video(agents, step, run.workdir)


if __name__ == "__main__":
    cli.run(main, FLAGS)
