"""A control for IQL's policy extraction: train_offline.py with each batch's AWR weights shuffled.

Each batch's advantages are permuted across its rows before they weigh log pi(a|s), so the
weights keep IQL's distribution (the same cap at 100, the same effective sample size,
`awr_weight_ess` in train.csv) but no longer say which action is the better one. An actor that
does as badly this way as IQL's does is held back by learning from few effective rows per batch,
not by the actions its advantages pick (docs/mazes.md, "What the flips come from").

    python -m tools.ablate_awr --config=configs/iql_antmaze.py \\
        --dataset=local/d4rl-antmaze-noflip/umaze-diverse-v1 --workdir=runs/shuffled-awr

Flags, outputs and resuming are train_offline.py's; the run's config.algo reads
`iql-shuffled-awr`, so it resumes with this command, not with train_offline.py.
"""

import jax

import learner
import train_offline
from harness import algorithms, cli

ALGO = "iql-shuffled-awr"


def shuffled_awr_actor_loss(params, actor, batch, advantages, beta, dropout_key):
    """IQL's L_pi with the batch's advantages in a random order (the order's key is folded from
    the actor's own key, so the run is still a function of --seed)."""
    order = jax.random.permutation(jax.random.fold_in(dropout_key, 1), advantages.shape[0])
    return learner.awr_actor_loss(params, actor, batch, advantages[order], beta, dropout_key)


class ShuffledAWRLearner(learner.IQLLearner):
    """IQLLearner with shuffled AWR weights; everything else (value, critic, target) is IQL's."""

    actor_loss = staticmethod(shuffled_awr_actor_loss)


ALGORITHM = algorithms.Algorithm(ShuffledAWRLearner, learner.HYPERPARAMETER_RANGES)


def main(argv):
    algorithms.ALGORITHMS[ALGO] = ALGORITHM
    train_offline.FLAGS.config.algo = ALGO
    train_offline.main(argv)


if __name__ == "__main__":
    cli.run(main, train_offline.FLAGS)
