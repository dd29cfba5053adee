"""What a run's value and critic say about its own dataset, row by row.

    python -m tools.critic_report --workdir=runs/iql_local_d4rl-antmaze_umaze-diverse-v1_seed0
    python -m tools.critic_report --workdir=runs/... --step=300000 --out=critic_300k.json

For every row of the run's dataset, with the saved agents (the final ones, or a checkpoint's):
V(s), Q(s, a) as the actor's loss reads it (the min over the target critic's heads), the
advantage A = Q - V, and AWR's weight min(exp(beta A), 100) (learner.awr_actor_loss). Per member
(seed, sweep point) it reports

- **value**: median V, and V against the data's own discounted return G on the rows whose G is
  known to within `--return_tolerance` (the episode reaches a terminal before it is cut, or the
  cut lies so many steps ahead that discount^k * max|r| / (1 - discount) is below the tolerance);
  V - G > 0 there is optimism about the data's own behaviour, which an upper expectile (tau > 0.5)
  is built to have;
- **advantages**: mean, spread, share above 0;
- **weights**: mean, share at the cap, Kish's effective sample size over all rows
  ((sum w)^2 / (n sum w^2); train.csv's `awr_weight_ess` is the same per batch).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from harness import cli, outputs, sweep
from learner import MAX_AWR_WEIGHT, awr_weights, effective_sample_share
from tools import evaluate

FLAGS = flags.FlagValues()
flags.DEFINE_string("workdir", None, "Work directory of a train_offline.py / train_finetune.py run.", flag_values=FLAGS)
flags.DEFINE_integer("step", None, "Read the checkpoint of this step (default: the final agents).", flag_values=FLAGS)
flags.DEFINE_float("return_tolerance", 1.0, "Compare V with G only where G is known to within this.",
                   flag_values=FLAGS)
flags.DEFINE_string("out", None, "Also write the report to this JSON file.", flag_values=FLAGS)

CHUNK = 65536  # rows per network call


def discounted_returns(rewards, masks, dones, discount: float) -> tuple[np.ndarray, np.ndarray]:
    """(G, tail): G_t = r_t + discount * mask_t * G_{t+1} within each episode (the TD target's
    own recursion: a row with mask 0 ends the sum), and `tail`, the rows from t to where G stops
    being exact (inf where a mask-0 row comes first, else the rows up to the episode's cut)."""
    rewards, masks, dones = (np.asarray(x, np.float64).tolist() for x in (rewards, masks, dones))
    n = len(rewards)
    returns, tail = [0.0] * n, [0.0] * n
    for t in range(n - 1, -1, -1):
        if masks[t] == 0:
            returns[t], tail[t] = rewards[t], math.inf
        elif dones[t] or t == n - 1:
            returns[t], tail[t] = rewards[t], 1.0
        else:
            returns[t], tail[t] = rewards[t] + discount * returns[t + 1], tail[t + 1] + 1.0
    return np.array(returns), np.array(tail)


def known_returns(tail: np.ndarray, rewards, discount: float, tolerance: float) -> np.ndarray:
    """Rows whose G misses at most `tolerance`: the cut-off tail is bounded by
    discount^tail * max|r| / (1 - discount)."""
    bound = np.abs(np.asarray(rewards)).max() / (1.0 - discount)
    with np.errstate(over="ignore"):
        return np.power(discount, tail) * bound <= tolerance


@jax.jit
def _read(agent, observations, actions):
    v = agent.value.apply_fn({"params": agent.value.params}, observations)
    q = agent.critic.apply_fn({"params": agent.target_critic_params}, observations, actions).min(axis=0)
    return v, q


def values_and_q(agent, data) -> tuple[np.ndarray, np.ndarray]:
    """(V(s), min_i Q_target_i(s, a)) on every row of `data`, in chunks."""
    vs, qs = [], []
    for start in range(0, data.size, CHUNK):
        v, q = _read(agent, jnp.asarray(data.observations[start:start + CHUNK]),
                     jnp.asarray(data.actions[start:start + CHUNK]))
        vs.append(np.asarray(v, np.float64))
        qs.append(np.asarray(q, np.float64))
    return np.concatenate(vs), np.concatenate(qs)


def report(v, q, beta, returns, known) -> dict:
    """The figures of one member (module docstring); `beta` None skips the weights (IDQL)."""
    adv = q - v
    weights = None if beta is None else np.asarray(awr_weights(jnp.asarray(adv, jnp.float32), beta), np.float64)
    out = {"rows": int(v.size), "v_median": float(np.median(v)), "q_median": float(np.median(q)),
           "known_return_rows": float(known.mean()),
           "adv_mean": float(adv.mean()), "adv_std": float(adv.std()), "adv_positive": float((adv > 0).mean())}
    if known.any():
        gap = v[known] - returns[known]
        out.update({"v_minus_return_median": float(np.median(gap)), "v_above_return": float((gap > 0).mean()),
                    "return_median": float(np.median(returns[known]))})
    if weights is not None:
        out.update({"weight_mean": float(weights.mean()), "weight_at_cap": float((weights >= MAX_AWR_WEIGHT).mean()),
                    "weight_ess": float(effective_sample_share(weights))})
    return out


def main(argv):
    cli.check_no_arguments(argv)
    if not FLAGS.workdir:
        raise cli.UserError("--workdir is required")
    if FLAGS.return_tolerance <= 0:
        raise cli.UserError("--return_tolerance must be > 0")
    run = evaluate.load_run(FLAGS.workdir, FLAGS.step)
    config, data, members = run.config, run.source.data, run.members
    returns, tail = discounted_returns(data.rewards, data.masks, data.dones, float(config.discount))
    known = known_returns(tail, data.rewards, float(config.discount), FLAGS.return_tolerance)
    print(f"{FLAGS.workdir}: {'final agents' if FLAGS.step is None else f'checkpoint of step {run.step}'}, "
          f"{data.size} rows, G known to within {FLAGS.return_tolerance:g} on {known.mean():.1%}")
    rows = []
    for i, seed in enumerate(members.seeds):
        agent = jax.tree.map(lambda x, i=i: x[i], run.agents)
        beta = float(agent.beta) if hasattr(agent, "beta") else None
        v, q = values_and_q(agent, data)
        row = {"seed": int(seed), **(members.points[i] if members.fields else {}), **report(v, q, beta, returns, known)}
        rows.append(row)
        point = sweep.describe(members.points[i]) + ", " if members.fields else ""
        print(f"{point}seed {seed}: " + ", ".join(f"{k} {x:.4g}" for k, x in row.items()
                                                 if isinstance(x, float)))
    if FLAGS.out:
        outputs.write_json(FLAGS.out, {"workdir": FLAGS.workdir, "step": run.step, "members": rows})
        print(f"wrote {FLAGS.out}")


if __name__ == "__main__":
    cli.run(main, FLAGS)
