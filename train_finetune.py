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
episode), and `utd` gradient steps per environment step. Steps count on; eval.csv and
train.csv carry a `phase` and an `env_steps` column so both phases share one x-axis.
"""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags
from tqdm import tqdm

from dataset import DatasetError
from harness import cli, experiment, multiseed, online, outputs
from replay_buffer import ReplayBuffer

FLAGS = flags.FlagValues()  # this script's own flags (see harness/cli.py)
experiment.define_run_flags(FLAGS)
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
        experiment.check_intervals(config, "pretrain_steps")
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


def checkpoint_template(agents, online: bool, num_seeds: int, obs_dim: int, action_dim: int) -> dict:
    """The checkpoint's structure: the offline phase saves the agents; the online phase also the
    replay buffers and the online counters (array shapes come from the file)."""
    template = {"agents": agents, "step": 0, "online": int(online)}
    if online:
        template.update(offline_steps=0, env_step=0, buffers=multiseed.stack([ReplayBuffer.create(1, obs_dim, action_dim)] * num_seeds),
                        episode_count=np.zeros(num_seeds, np.int32), recent_returns=np.zeros((num_seeds, online.RECENT)))
    return template


# Config fields that shape an agent's networks or optimizer state: an agent saved with other
# values cannot be loaded into this run's.
AGENT_SHAPE_FIELDS = ("algo", "hidden_dims", "num_qs", "cosine_decay", "dropout_rate")


def saved_config_differences(agent_path: str, config) -> str:
    """'; it was trained with cosine_decay=True (this config: False), ...' from the config.json
    beside a saved agent, for the shape fields that differ; '' when there is none to read."""
    try:
        with open(os.path.join(os.path.dirname(os.path.abspath(agent_path)), "config.json")) as f:
            saved = json.load(f)["config"]
        fields = [k for k in experiment.config_changes(saved, config) if k in AGENT_SHAPE_FIELDS]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return ""
    if not fields:
        return ""
    diffs = ", ".join(f"{k}={saved.get(k)!r} (this config: {config.get(k)!r})" for k in fields)
    return f"; it was trained with {diffs}: pass the same values (e.g. --config.{fields[0]}=...)"


def offline_phase(exp, agents, state: dict | None) -> tuple:
    """Phase 1: pretrain (or load --init_from, or resume); returns (agents, offline steps done)."""
    config = exp.config
    if state is not None:
        agents, step = multiseed.shard_seeds(state["agents"], exp.mesh), int(state["step"])
        if int(state["online"]):
            return agents, int(state["offline_steps"])
    elif FLAGS.init_from:
        try:
            loaded = outputs.load_pytree(FLAGS.init_from, multiseed.fetch(agents))
        except (OSError, ValueError) as e:
            raise cli.UserError(f"--init_from: {e}{saved_config_differences(FLAGS.init_from, config)}") from e
        agents = multiseed.shard_seeds(loaded, exp.mesh)
        step = int(multiseed.fetch(agents.actor.step)[0])
        print(f"starting from {FLAGS.init_from} (trained for {step} offline steps)")
        return agents, step
    else:
        step = 0
    if config.pretrain_steps and not FLAGS.init_from:
        agents = exp.offline_loop(agents, step, config.pretrain_steps, {**OFFLINE_ROW, "online_return": None},
                                  OFFLINE_ROW, {"online": 0}, eval_interval=config.pretrain_eval_interval)
        step = config.pretrain_steps
    return agents, step


def online_buffers(exp, state: dict | None):
    """One replay buffer per seed, sharded with the seeds: resumed, or seeded with the whole
    offline dataset (empty with `mix_offline`, whose batches take half from the dataset)."""
    if state is not None and int(state["online"]):
        return multiseed.shard_seeds(state["buffers"], exp.mesh)
    config, data = exp.config, exp.data
    scale, shift = exp.info.reward_scale, exp.info.reward_shift
    if config.mix_offline:
        single = ReplayBuffer.create(config.buffer_size, data.observations.shape[1], data.actions.shape[1], scale, shift)
    else:
        try:
            # From a host copy: the dataset is replicated over the mesh; the buffer is built on
            # one device, then stacked and sharded per seed.
            single = ReplayBuffer.from_dataset(jax.device_get(data), config.buffer_size, scale, shift)
        except DatasetError as e:
            raise cli.UserError(str(e)) from e
    return multiseed.shard_seeds(multiseed.stack([single] * len(exp.seeds)), exp.mesh)


def online_phase(exp, agents, buffers, step: int, offline_steps: int, state: dict | None):
    """Phase 2: `online_steps` env steps per seed, `utd` updates per env step; returns (agents,
    step, episodes per seed). The env steps run in compiled chunks (`online.compiled_online_chunk`)
    that end at the log, evaluation and checkpoint points; a stop signal takes effect at the
    end of the running chunk (at most `steps_per_call` env steps)."""
    config, n = exp.config, len(exp.seeds)
    resumed = state is not None and int(state["online"])
    if resumed:
        env_step = int(state["env_step"])
        stats = online.OnlineStats.create(state["episode_count"], state["recent_returns"])
    else:
        env_step = 0
        stats = online.OnlineStats.create(np.zeros(n, np.int32), np.full((n, online.RECENT), np.nan))
    stats = multiseed.shard_seeds(stats, exp.mesh)

    streams = [multiseed.seed_streams(s) for s in exp.seeds]
    act_keys = multiseed.shard_seeds(jnp.stack([st["acting"] for st in streams]), exp.mesh)
    seed_ids = multiseed.shard_seeds(jnp.arange(n, dtype=jnp.int32), exp.mesh)
    # Episodes start from seeds derived from the env-step count (a resumed run restarts the
    # episodes that a stop interrupted; the env's own state cannot be saved in general).
    env_seeds = [int(jax.random.randint(jax.random.fold_in(st["env_resets"], env_step), (), 0, 2**30))
                 for st in streams]
    envs = online.HostEnvs(exp.make_env, env_seeds)
    obs = multiseed.shard_seeds(jnp.asarray(envs.first_obs), exp.mesh)
    temperature, batch_size = config.online_temperature, config.online_batch_size or config.batch_size
    # The action taken after k env steps is drawn with the seed's acting key folded with k.
    actions = multiseed.shard_seeds(multiseed.sample_actions(agents, obs[:, None], experiment.fold_keys(act_keys, env_step),
                                                             temperature)[:, 0], exp.mesh)
    checked_through = step  # the NaN guard's last checked step
    chunks = {}  # the compiled chunk for each number of updates per env step
    with tqdm(total=config.online_steps, initial=env_step, unit="env step", desc="online", dynamic_ncols=True,
              disable=not exp.is_main) as bar:
        while env_step < config.online_steps:
            end = online.chunk_end(env_step, config)
            # Env step k trains only once k > start_training (step_updates per env step).
            step_updates = config.utd if env_step >= config.start_training else 0
            if step_updates not in chunks:  # two at most: before and after start_training
                chunks[step_updates] = online.compiled_online_chunk(
                    exp.mesh, envs, envs.first_obs.shape[1], step_updates, batch_size, config.mix_offline, temperature)
            agents, buffers, stats, obs, actions, metrics = chunks[step_updates](
                agents, buffers, stats, act_keys, seed_ids, obs, actions, exp.data, env_step, end)
            step += step_updates * (end - env_step)
            env_step = end
            bar.update(env_step - bar.n)
            if step_updates:
                exp.check_finite(step, agents, metrics, first=checked_through + 1)
                checked_through = step
            extra = {"phase": "online", "env_steps": env_step}
            if env_step % config.log_interval == 0 and step_updates:
                host = multiseed.fetch({"count": stats.episode_count, "recent": stats.recent})
                online_return = float(np.mean(np.nanmean(host["recent"], axis=1))) if host["count"].min() > 0 else None
                exp.log_train(step, metrics, {**extra, "online_return": online_return})
            if exp.due(env_step, config.eval_interval, config.online_steps):
                bar.set_postfix(score=f"{exp.evaluate(agents, step, extra):.1f}")
            exp.checkpoint(step, {"agents": agents, "step": step, "online": 1, "offline_steps": offline_steps,
                                  "env_step": env_step, "buffers": buffers, "episode_count": stats.episode_count,
                                  "recent_returns": stats.recent}, config.online_steps, counter=env_step)
    envs.close()
    return agents, step, multiseed.fetch(stats.episode_count)


def main(argv):
    if len(argv) > 1:
        raise cli.UserError(f"unexpected positional arguments: {argv[1:]}")
    experiment.start_jax(FLAGS)
    config = FLAGS.config
    check_config(config)
    loop_fields = tuple(f for f in experiment.OFFLINE_FIELDS if f != "max_steps") + FINETUNE_FIELDS
    with experiment.Experiment.setup(FLAGS, config, workdir_prefix="finetune_", loop_fields=loop_fields) as exp:
        if exp.make_env is None:
            raise cli.UserError(f"{FLAGS.dataset} names no env to fine-tune in: pass --env_name")
        agents = exp.create_agents(max_steps=config.pretrain_steps + config.online_steps)
        dims = (len(exp.seeds), exp.data.observations.shape[1], exp.data.actions.shape[1])
        state = exp.restore(lambda raw: checkpoint_template(agents, bool(int(raw["online"])), *dims))
        agents, offline_steps = offline_phase(exp, agents, state)
        buffers = online_buffers(exp, state)
        step = int(state["step"]) if state is not None and int(state["online"]) else offline_steps
        agents, step, episodes = online_phase(exp, exp.algorithm.for_online_phase(agents), buffers, step,
                                              offline_steps, state)
        exp.finish(agents, step, {"offline_steps": offline_steps, "online_env_steps": config.online_steps,
                                  "online_episodes_per_seed": [int(c) for c in episodes]})


if __name__ == "__main__":
    cli.run(main, FLAGS)
