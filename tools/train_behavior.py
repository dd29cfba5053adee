"""Train the SAC behavior agent whose snapshots `tools/collect.py` turns into offline datasets.

    python -m tools.train_behavior --env=Hopper-v5 --workdir=runs/behavior/Hopper-v5 --seed=0

Writes to --workdir:
  snapshots/step_XXXXXXX.msgpack  the actor's parameters every `snapshot_interval` steps
  snapshots.json                  [{step, return, return_std}] from deterministic evaluations
  train.csv, eval.csv, tb/        training scalars and evaluation returns
  checkpoints/                    agent, replay buffer rows and loop counters, to resume
Run it again with the same --workdir to resume from the last checkpoint (the episode in
progress at the checkpoint is cut there and a new one starts).
"""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags
from tqdm import tqdm

import evaluation
from behavior.sac import SACLearner
from harness import cli, outputs
from replay_buffer import ReplayBuffer

FLAGS = flags.FlagValues()  # this script's own flags (see harness/cli.py)
flags.DEFINE_string("env", "Hopper-v5", "Gymnasium environment id.", flag_values=FLAGS)
flags.DEFINE_string("workdir", None, "Output folder (default: runs/behavior/<env>).", flag_values=FLAGS)
flags.DEFINE_integer("seed", 0, "Seed; every random draw derives from it.", flag_values=FLAGS)
cli.define_config("config", os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs",
                                         "sac_mujoco.py"), "SAC config file.", FLAGS)


# What reads the config (configs/sac_mujoco.py): SACLearner.create, and this script's loop.
SAC_FIELDS = ("hidden_dims", "actor_lr", "critic_lr", "temperature_lr", "init_temperature", "discount", "target_tau")
LOOP_FIELDS = ("batch_size", "max_steps", "start_steps", "steps_per_call", "snapshot_interval", "eval_episodes",
               "checkpoint_interval")


def train(env_id: str, config, workdir: str, seed: int) -> list[dict]:
    """Train SAC on `env_id`, resuming from the newest checkpoint in `workdir` when there is one.

    Returns the snapshot list [{step, return, return_std}].
    """
    cli.check_fields(config, SAC_FIELDS + LOOP_FIELDS)
    for name in ("start_steps", "snapshot_interval", "checkpoint_interval", "max_steps"):
        if config[name] % config.steps_per_call:
            raise cli.UserError(f"config.{name}={config[name]} must be a multiple of config.steps_per_call={config.steps_per_call}")
    os.makedirs(os.path.join(workdir, "snapshots"), exist_ok=True)
    make_env = lambda: evaluation.make_env(env_id)  # noqa: E731
    env = make_env()
    obs_dim = int(np.prod(env.observation_space.shape))
    action_dim = int(np.prod(env.action_space.shape))

    key = jax.random.key(seed)
    agent_key, act_key, env_key, eval_key = jax.random.split(key, 4)
    agent = SACLearner.create(agent_key, jnp.zeros(obs_dim), jnp.zeros(action_dim), config)
    buffer = ReplayBuffer.create(config.max_steps, obs_dim, action_dim)
    state = {"step": 0, "episodes": 0, "snapshots": []}

    # Checkpoints (the same Checkpointer as the training scripts): the agent, the buffer's valid
    # rows and the loop counters; the snapshot list is snapshots.json up to the checkpoint.
    checkpointer = outputs.Checkpointer(workdir, keep=2)
    if checkpointer.steps():
        with open(os.path.join(workdir, "behavior.json")) as f:
            meta = json.load(f)
        if meta["env"] != env_id or meta["seed"] != seed:
            raise cli.UserError(f"{workdir} holds a run of {meta['env']} seed {meta['seed']}; use another --workdir")
        restored = checkpointer.restore({"agent": agent, "rows": buffer.data, "step": 0, "episodes": 0})
        if restored is None:
            raise cli.UserError(f"no checkpoint in {checkpointer.folder} could be read back; move it away to start over")
        step, saved = restored
        agent = saved["agent"]
        rows = jax.tree.map(jnp.asarray, saved["rows"])
        rows = rows.replace(dones=rows.dones.at[-1].set(1.0))  # the interrupted episode ends here
        n = rows.size
        buffer = buffer.replace(data=jax.tree.map(lambda b, x: b.at[:n].set(x), buffer.data, rows),
                                size=jnp.int32(n), cursor=jnp.int32(n % buffer.capacity))
        with open(os.path.join(workdir, "snapshots.json")) as f:
            snapshots = [s for s in json.load(f) if s["step"] <= step]
        state = {"step": step, "episodes": int(saved["episodes"]), "snapshots": snapshots}
        print(f"resuming {env_id} from step {step} ({n} transitions in the buffer)")

    # What behavior/datasets.py needs to rebuild the actor from a snapshot file.
    outputs.write_json(os.path.join(workdir, "behavior.json"), {
        "env": env_id, "hidden_dims": list(config.hidden_dims), "obs_dim": obs_dim,
        "action_dim": action_dim, "start_steps": config.start_steps, "seed": seed})
    writer = outputs.MetricsWriter(workdir, tensorboard=True, resume_step=state["step"] or None)
    chunk = {k: [] for k in ("obs", "act", "rew", "term", "trunc", "next_obs")}

    def reset():
        seed = int(jax.random.randint(jax.random.fold_in(env_key, state["episodes"]), (), 0, 2**31 - 1))
        state["episodes"] += 1
        return env.reset(seed=seed)[0]

    obs, episode_return, returns = reset(), 0.0, []
    k = config.steps_per_call
    bar = tqdm(total=config.max_steps, initial=state["step"], unit="step", dynamic_ncols=True, desc=env_id)
    for step in range(state["step"], config.max_steps):
        step_key = jax.random.fold_in(act_key, step)
        if step < config.start_steps:
            action = np.asarray(jax.random.uniform(step_key, (action_dim,), minval=-1.0, maxval=1.0))
        else:
            action = np.asarray(agent.sample_actions(jnp.asarray(obs, jnp.float32), step_key, False))
        next_obs, reward, terminated, truncated, _ = env.step(action)
        for name, value in zip(chunk, (obs, action, reward, terminated, truncated, next_obs)):
            chunk[name].append(value)
        episode_return += reward
        obs = next_obs
        if terminated or truncated:
            returns.append(episode_return)
            obs, episode_return = reset(), 0.0

        if (step + 1) % k == 0:
            buffer = buffer.insert(*(np.asarray(chunk[name], np.float32) for name in chunk))
            chunk = {name: [] for name in chunk}
            if step + 1 > config.start_steps:
                agent, info = agent.update_n(buffer, k, config.batch_size)
            bar.update(k)
        if (step + 1) % config.snapshot_interval == 0:
            if step + 1 > config.start_steps:
                scalars = {name: float(v) for name, v in jax.device_get(info).items()}
                recent = float(np.mean(returns[-10:])) if returns else None
                writer.write("train", step + 1, seed, {"episode_return": recent, **scalars})
            policy = lambda o: agent.sample_actions(o, eval_key, True)  # noqa: E731
            eval_seed = int(jax.random.randint(jax.random.fold_in(eval_key, step), (), 0, 2**30))
            result = evaluation.evaluate(policy, make_env, config.eval_episodes, eval_seed)
            outputs.save_pytree(os.path.join(workdir, "snapshots", f"step_{step + 1:07d}.msgpack"), agent.actor.params)
            state["snapshots"].append({"step": step + 1, "return": result["return"], "return_std": result["return_std"]})
            writer.write("eval", step + 1, seed, {"return": result["return"], "return_std": result["return_std"]})
            outputs.write_json(os.path.join(workdir, "snapshots.json"), state["snapshots"])
            bar.set_postfix(eval_return=f"{result['return']:.0f}")
        if (step + 1) % config.checkpoint_interval == 0 or step + 1 == config.max_steps:
            state["step"] = step + 1
            checkpointer.save(step + 1, {"agent": agent, "rows": buffer.valid(), "step": step + 1,
                                         "episodes": state["episodes"]})
    bar.close()
    writer.close()
    best = max(state["snapshots"], key=lambda s: s["return"]) if state["snapshots"] else None
    if best:
        print(f"best snapshot: step {best['step']}, return {best['return']:.1f}")
    return state["snapshots"]


def main(argv):
    del argv
    train(FLAGS.env, FLAGS.config, FLAGS.workdir or os.path.join("runs", "behavior", FLAGS.env), FLAGS.seed)


if __name__ == "__main__":
    cli.run(main, FLAGS)
