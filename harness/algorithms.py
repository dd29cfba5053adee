"""Which agent a run trains (`config.algo`), who reads each field of a run's config, and the
run's agents: one per seed, stacked and sharded (harness/multiseed.py)."""

import dataclasses
from typing import Any, Callable, Optional

import idql
import learner
from harness import cli, multiseed, sweep
from idql import IDQLLearner
from learner import IQLLearner


@dataclasses.dataclass(frozen=True)
class Algorithm:
    """What the scripts need to know of an algorithm: its agent class, and what changes when
    fine-tuning's online phase starts."""

    agent_class: Any
    ranges: dict  # each float hyperparameter's allowed range (checked for every sweep point)
    for_online_phase: Callable[[Any], Any] = lambda agents: agents


# config.algo -> Algorithm (an explicit table, never a name lookup in globals()).
ALGORITHMS = {
    "iql": Algorithm(IQLLearner, learner.HYPERPARAMETER_RANGES),
    # IDQL fine-tunes only its critic online; the diffusion actor stays as pretrained.
    "idql": Algorithm(IDQLLearner, idql.HYPERPARAMETER_RANGES, for_online_phase=lambda agents: agents.replace(train_actor=False)),
}

# Who reads the fields of a run's config besides its agent (`agent_class.fields`): the data
# loading (harness/sources.py) and the training loop (OFFLINE_FIELDS: train_offline.py;
# fine-tuning adds its own). A field nobody reads is an error, so a typo never trains the default.
# The config stays flat: the agent's fields are those of its class's DEFAULTS, and one flag
# (`--config.beta=0`) or sweep (`--sweep=beta=0,3`) names a field as the papers name it.
DATA_FIELDS = ("reward_transform", "ref_min_score", "ref_max_score")
OFFLINE_FIELDS = ("algo", "batch_size", "max_steps", "steps_per_call", "log_interval", "eval_interval",
                  "eval_episodes", "eval_max_episode_steps", "eval_temperature", "checkpoint_interval",
                  "keep_checkpoints", "tensorboard")


def algorithm_for(config, loop_fields: tuple = OFFLINE_FIELDS) -> Algorithm:
    """The run's Algorithm; a UserError for an unknown `algo` or a field that nobody reads."""
    if config.algo not in ALGORITHMS:
        raise cli.UserError(f"config.algo={config.algo!r} is not one of {sorted(ALGORITHMS)}")
    algorithm = ALGORITHMS[config.algo]
    agent_fields = algorithm.agent_class.fields(dict.fromkeys(config))
    cli.check_fields(config, {*agent_fields, *DATA_FIELDS, *loop_fields})
    return algorithm


def check_intervals(config, total_steps_field: str = "max_steps") -> None:
    """The loop logs, evaluates and checkpoints between compiled calls of `steps_per_call` steps."""
    for name in ("batch_size", total_steps_field, "steps_per_call", "log_interval", "eval_interval"):
        if config[name] <= 0:
            raise cli.UserError(f"config.{name} must be > 0, got {config[name]}")
    if config.eval_episodes < 0:
        raise cli.UserError(f"config.eval_episodes must be >= 0, got {config.eval_episodes}")
    for name in (total_steps_field, "log_interval", "eval_interval", "checkpoint_interval"):
        if config[name] % config.steps_per_call:
            raise cli.UserError(f"config.{name}={config[name]} is not a multiple of config.steps_per_call="
                                f"{config.steps_per_call}: the loop logs and evaluates between compiled calls")


def run_members(algorithm: Algorithm, config, specs: list[str], seed: int, num_seeds: int) -> sweep.Members:
    """The run's members: `num_seeds` seeds from `seed`, times every point of the `--sweep` grid."""
    members = sweep.members(seed, num_seeds, sweep.parse(specs, config, sweep.sweepable_fields(algorithm.agent_class)))
    for point in members.grid():
        try:
            learner.check_hyperparameters({**algorithm.agent_class.fields(config), **point}, algorithm.ranges)
        except ValueError as e:
            raise cli.UserError(f"--sweep point {sweep.describe(point)}: {e}") from e
    return members


def create_agents(algorithm: Algorithm, config, data, members: sweep.Members, mesh, max_steps: Optional[int] = None):
    """One agent per member (from its seed's "agent" key stream, with its swept values),
    stacked on the member axis and sharded over `mesh`; `max_steps` (fine-tuning's) replaces
    the config's as the span of the actor's schedule. The example observation and action come
    from `data`."""
    obs, act = data.observations[0], data.actions[0]
    fields = algorithm.agent_class.fields(config) | ({} if max_steps is None else {"max_steps": max_steps})
    try:
        agents = multiseed.create_agents(lambda key: algorithm.agent_class.create(key, obs, act, fields),
                                         members.seeds, mesh)
    except ValueError as e:
        raise cli.UserError(str(e)) from e
    return multiseed.shard_seeds(sweep.apply(agents, members), mesh) if members.fields else agents
