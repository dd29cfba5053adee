"""Do an IQL agent's AWR weights rank actions, or states? Figures from a finished run.

    python -m tools.advantages --workdir=runs/antmaze/iql_umaze_300k
    python -m tools.advantages --workdir=runs/iql_local_hopper_medium-v0_seed0 --rows=100000 --seed_index=0

The actor's loss weighs each dataset row by w = min(exp(beta A), 100) with A = min Q(s, a) - V(s)
(learner.awr_actor_loss). The weights should prefer better *actions*; but A also carries the
critic's and value net's errors, which vary from state to state. This script splits A, on a
random subset of the dataset's rows, into a part that depends on the state alone,

    B(s) = min Q(s, mu(s)) - V(s)        (mu: the agent's own policy mean)

and the rest, A - B, which is what the dataset's action changes. It prints how much of A's
variance B explains (corr(A, B)^2; as B is a function of the state, this is a lower bound of
the share that the state alone explains, Var E[A | s] / Var A), how concentrated the weights
are (effective sample size), and how much of the weight goes to the 10% of rows with the
highest A and to the 10% with the highest B. A small effective sample size means that the
actor is fitted to few rows, whichever part of A spreads the weights; docs/mazes.md's section on
the local umaze has the figures of runs that fail and runs that work.
"""

import json
import os
import types

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import flags

import dataset as dataset_lib
from harness import cli, multiseed, outputs, sources
from learner import MAX_AWR_WEIGHT, IQLLearner

FLAGS = flags.FlagValues()
flags.DEFINE_string("workdir", None, "A train_offline.py / train_finetune.py work directory with agent.msgpack.",
                    flag_values=FLAGS)
flags.DEFINE_integer("seed_index", 0, "Which of the run's seeds (0 = its first).", flag_values=FLAGS)
flags.DEFINE_integer("rows", 200_000, "Dataset rows to analyse (a random subset; all if fewer).", flag_values=FLAGS)
flags.DEFINE_integer("seed", 0, "Seed of the row subset.", flag_values=FLAGS)
CHUNK = 50_000


def load_agent(workdir: str, seed_index: int) -> tuple[IQLLearner, dict, dataset_lib.Dataset]:
    """The run's saved IQL agent for one seed, its config.json and its (preprocessed) dataset."""
    path = os.path.join(workdir, "agent.msgpack")
    config_path = os.path.join(workdir, "config.json")
    for p in (path, config_path):
        if not os.path.exists(p):
            raise cli.UserError(f"{p} does not exist: --workdir must be a finished run's work directory")
    with open(config_path) as f:
        saved = json.load(f)
    config, run_flags = saved["config"], saved["flags"]
    if config.get("algo") != "iql":
        raise cli.UserError(f"{workdir} trained algo={config.get('algo')!r}; this script reads IQL agents only")
    num_seeds = int(run_flags.get("num_seeds", 1))
    if not 0 <= seed_index < num_seeds:
        raise cli.UserError(f"--seed_index={seed_index}: the run has {num_seeds} seed(s)")
    # The run's own loading (a file's action mapping, reward transform, local build), so the rows
    # here are the rows it trained on.
    run_source = types.SimpleNamespace(dataset=run_flags["dataset"], env_name=run_flags.get("env_name"))
    data = sources.load_data(run_source, ml_collections.ConfigDict(config))[0]
    template = IQLLearner.create(jax.random.key(0), data.observations[0], data.actions[0], IQLLearner.fields(config))
    try:
        agents = outputs.load_pytree(path, multiseed.stack([template] * num_seeds))
    except Exception as e:  # a file of another shape or algorithm
        raise cli.UserError(f"{path} does not load as this run's IQL agent: {e}") from e
    return multiseed.unstack(agents, seed_index), config, data


@jax.jit
def _advantage_pair(agent: IQLLearner, obs: jax.Array, act: jax.Array) -> jax.Array:
    """(2, n): A and B of `split_advantages` for one chunk (the agent is an argument, not a
    closed-over constant, so one compile serves every chunk of the same size)."""
    def q(a):
        return agent.critic.apply_fn({"params": agent.target_critic_params}, obs, a).min(axis=0)

    v = agent.value.apply_fn({"params": agent.value.params}, obs)
    mu, _ = agent.actor.apply_fn({"params": agent.actor.params}, obs)
    return jnp.stack([q(act) - v, q(mu) - v])


def split_advantages(agent: IQLLearner, observations, actions) -> tuple[np.ndarray, np.ndarray]:
    """(A, B) per row: A = min Q_target(s, a) - V(s), B = min Q_target(s, mu(s)) - V(s)."""
    ab = np.concatenate([np.asarray(_advantage_pair(agent, observations[i:i + CHUNK], actions[i:i + CHUNK]))
                         for i in range(0, len(observations), CHUNK)], axis=1)
    return ab[0], ab[1]


def weight_figures(a: np.ndarray, b: np.ndarray, beta: float) -> dict:
    """The figures the script prints, from per-row A, B and the AWR inverse temperature."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    w = np.minimum(np.exp(beta * a), MAX_AWR_WEIGHT)
    top_a = a >= np.quantile(a, 0.9)
    top_b = b >= np.quantile(b, 0.9)
    # A constant B (one state, or float noise around one value) explains nothing.
    corr = float(np.corrcoef(a, b)[0, 1]) if a.std() > 1e-6 and b.std() > 1e-6 else 0.0
    return {
        "rows": int(len(a)),
        "a_mean": float(a.mean()), "a_std": float(a.std()),
        "b_std": float(b.std()), "within_state_std": float((a - b).std()),
        "corr_a_b": corr, "state_share_of_variance": corr**2,
        "effective_sample_fraction": float(w.sum() ** 2 / (len(w) * (w**2).sum())),
        "capped_fraction": float((w >= MAX_AWR_WEIGHT).mean()),
        "weight_share_top_decile_a": float(w[top_a].sum() / w.sum()),
        "weight_share_top_decile_b": float(w[top_b].sum() / w.sum()),
    }


def main(argv):
    del argv
    if not FLAGS.workdir:
        raise cli.UserError("pass --workdir=<a finished IQL run's work directory>")
    if FLAGS.rows <= 0:
        raise cli.UserError(f"--rows={FLAGS.rows} must be positive")
    agent, config, data = load_agent(FLAGS.workdir, FLAGS.seed_index)
    n = min(FLAGS.rows, data.size)
    rows = np.sort(np.asarray(jax.random.permutation(jax.random.key(FLAGS.seed), data.size)[:n]))
    a, b = split_advantages(agent, np.asarray(data.observations)[rows], np.asarray(data.actions)[rows])
    beta = float(config["beta"])
    fig = weight_figures(a, b, beta)
    print(f"{FLAGS.workdir} (seed index {FLAGS.seed_index}), {n} of {data.size} rows, beta {beta:g}:")
    print(f"  A = min Q(s, a) - V(s): mean {fig['a_mean']:+.3f}, std {fig['a_std']:.3f}")
    print(f"  B = min Q(s, mu(s)) - V(s), the state's part: std {fig['b_std']:.3f}; corr(A, B) {fig['corr_a_b']:.3f}, "
          f"so the state explains at least {100 * fig['state_share_of_variance']:.0f}% of A's variance")
    print(f"  A - B, the action's part: std {fig['within_state_std']:.3f}")
    print(f"  weights min(exp(beta A), {MAX_AWR_WEIGHT:g}): effective sample size "
          f"{100 * fig['effective_sample_fraction']:.1f}% of the rows, {100 * fig['capped_fraction']:.1f}% at the cap")
    print(f"  weight share of the top 10% of rows by A: {100 * fig['weight_share_top_decile_a']:.0f}%; "
          f"by B (states alone): {100 * fig['weight_share_top_decile_b']:.0f}%")


if __name__ == "__main__":
    cli.run(main, FLAGS)
