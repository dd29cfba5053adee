"""Hyperparameter sweeps as more members of the seed axis: a grid trains in one program.

    python train_offline.py --config=configs/iql_antmaze.py --sweep=expectile=0.7,0.9 --sweep=beta=0,3,10

An agent's float hyperparameters are array leaves (IQL: expectile, beta, discount, target_tau;
IDQL: expectile, exp_scale, discount, target_tau, ema_rate; both: the three learning rates,
held in the optimizer states by optax.inject_hyperparams), so agents that differ only in them
have the same structure and stack like seeds do. A run with G grid points and N seeds has
G x N members, point-major: member g * N + i is grid point g with seed `seed + i`, created
from that seed's key exactly as a run without a sweep, then given the point's values. One
program (vmapped, sharded over devices like seeds) trains them all; only values differ, so
the grid compiles once. Structural fields (layer widths, critic heads, batch size, diffusion
steps) shape the program itself and need separate runs.
"""

import dataclasses
import difflib
import itertools
from typing import Any

import jax.numpy as jnp
import numpy as np

from harness import cli

# Learning rates live in the TrainStates' optimizer states (optax.inject_hyperparams).
RATES = {"actor_lr": "actor", "critic_lr": "critic", "value_lr": "value"}


@dataclasses.dataclass(frozen=True)
class Members:
    """Who trains in a run: member j has seed `seeds[j]` and the hyperparameters `points[j]`
    ({} without a sweep); `fields` are the swept fields, in the order given."""

    seeds: list[int]
    points: list[dict]
    fields: tuple = ()

    def label(self, j: int) -> str:
        """'beta=3 expectile=0.9' (empty without a sweep)."""
        return describe(self.points[j])

    def grid(self) -> list[dict]:
        """The distinct grid points, in member order."""
        seen = []
        for p in self.points:
            if p not in seen:
                seen.append(p)
        return seen


def describe(point: dict, separator: str = " ") -> str:
    """'beta=3 expectile=0.9' (with `separator` ',': a TensorBoard folder name)."""
    return separator.join(f"{k}={v:g}" for k, v in point.items())


def sweepable_fields(agent_class) -> tuple:
    """The config fields a sweep may vary for `agent_class`: those the agent holds as pytree
    leaves (its float hyperparameters), and the three learning rates."""
    leaves = {f.name: None for f in dataclasses.fields(agent_class) if f.metadata.get("pytree_node", True)}
    return tuple(agent_class.fields(leaves)) + tuple(RATES)


def parse(specs: list[str], config, sweepable: tuple) -> list[tuple[str, list[float]]]:
    """[(field, values)] from `--sweep=field=v1,v2,...` flags; a UserError for a malformed
    flag, a field the run does not have, a structural field, or a field given twice."""
    grid: list[tuple[str, list[float]]] = []
    for spec in specs:
        name, sep, text = spec.partition("=")
        name = name.strip()
        if not sep or not text.strip():
            raise cli.UserError(f"--sweep={spec}: expected field=value1,value2,... (e.g. --sweep=beta=1,3,10)")
        if name not in config:
            near = difflib.get_close_matches(name, sorted(config), n=1)
            hint = f"; did you mean {near[0]}?" if near else ""
            raise cli.UserError(f"--sweep: config.{name} is not a field of this run{hint}")
        if name not in sweepable:
            raise cli.UserError(f"--sweep: config.{name} shapes the compiled program (or is not the agent's); "
                                f"a grid over it needs separate runs. Fields a sweep can vary here: "
                                f"{', '.join(sorted(sweepable))}")
        if name in (g[0] for g in grid):
            raise cli.UserError(f"--sweep: config.{name} is given twice; list all its values in one --sweep")
        try:
            values = [float(v) for v in text.split(",")]
        except ValueError as e:
            raise cli.UserError(f"--sweep={spec}: the values must be numbers") from e
        if len(set(values)) != len(values):
            raise cli.UserError(f"--sweep={spec}: a value is listed twice")
        grid.append((name, values))
    return grid


def num_points(specs: list[str]) -> int:
    """How many grid points the raw `--sweep` flags make (before JAX starts, to size the CPU
    devices; `parse` checks the flags themselves)."""
    return int(np.prod([len(spec.partition("=")[2].split(",")) for spec in specs], dtype=np.int64))


def members(seed: int, num_seeds: int, grid: list[tuple[str, list[float]]]) -> Members:
    """Every point of the grid's cross product x `num_seeds` seeds, point-major."""
    fields = tuple(name for name, _ in grid)
    points = [dict(zip(fields, combo)) for combo in itertools.product(*(values for _, values in grid))]
    return Members(seeds=[seed + i for _ in points for i in range(num_seeds)],
                   points=[p for p in points for _ in range(num_seeds)], fields=fields)


def apply(agents: Any, members: Members) -> Any:
    """Stacked agents (one per member, made with the base config) with each member's swept
    values set: agent fields are replaced, learning rates are written into the injected
    hyperparameters of the TrainState's optimizer state."""
    for name in members.fields:
        values = jnp.asarray(np.array([p[name] for p in members.points], np.float32))
        if name in RATES:
            state = getattr(agents, RATES[name])
            opt = state.opt_state
            agents = agents.replace(**{RATES[name]: state.replace(
                opt_state=opt._replace(hyperparams={**opt.hyperparams, "learning_rate": values}))})
        else:
            agents = agents.replace(**{name: values})
    return agents
