"""What a training script sets up before its loop, in one place for train_offline.py,
train_finetune.py and tools/evaluate.py (a saved run rebuilt from its config.json):

    run = setup.start(FLAGS)                       # JAX, members, mesh, data, work directory, config.json
    agents = run.create_agents()                   # one per member, sharded over the mesh
    with run.outputs(template) as (out, state):    # checkpoints (state: the newest, or None), metrics,
        ...                                        # evaluator, stop signals: the script's loop
"""

import contextlib
import dataclasses
from typing import Any, Callable, Iterator, Optional

import jax
from jax.sharding import Mesh

from harness import algorithms, cli, devices, multiseed, outputs, rundir, sources, stops, sweep
from harness.evaluator import Evaluator


def schedule_steps(config) -> int:
    """The span of the actor's learning-rate schedule: `max_steps` offline; fine-tuning's
    `pretrain_steps + online_steps` (its step counter runs on through the online phase)."""
    return config.max_steps if "max_steps" in config else config.pretrain_steps + config.online_steps


@dataclasses.dataclass
class Outputs:
    """What the loop writes to and answers to: checkpoints, train.csv / eval.csv (and TensorBoard),
    the evaluator, and the stop signals (SIGTERM, Ctrl-C)."""

    checkpointer: outputs.Checkpointer
    writer: outputs.MetricsWriter
    evaluator: Evaluator
    signals: stops.StopSignals


@dataclasses.dataclass
class Run:
    """A run's config, algorithm, members (seeds x sweep points), device mesh and data source;
    its work directory once `start` has opened one."""

    config: Any
    algorithm: algorithms.Algorithm
    members: sweep.Members
    mesh: Mesh
    source: sources.Source
    workdir: Optional[str] = None

    def create_agents(self) -> Any:
        """One agent per member, stacked and sharded over the mesh (harness/algorithms.py)."""
        return algorithms.create_agents(self.algorithm, self.config, self.source.data, self.members, self.mesh,
                                        schedule_steps(self.config))

    @contextlib.contextmanager
    def outputs(self, template: Any) -> Iterator[tuple[Outputs, Optional[dict]]]:
        """(the loop's Outputs, the newest checkpoint restored into `template`, or None); the
        CSVs are cut back to the checkpoint's step, and everything is closed on leaving."""
        config = self.config
        checkpointer = outputs.Checkpointer(self.workdir, config.keep_checkpoints)
        state = rundir.restore(checkpointer, template)
        evaluator = Evaluator(self.source.make_env, self.members.seeds, config.eval_episodes, self.source.ref_min,
                              self.source.ref_max, config.get("eval_temperature"),
                              0.0 if state is None else float(state["eval_seconds"]))
        with outputs.MetricsWriter(self.workdir, config.tensorboard,
                                   resume_step=None if state is None else int(state["step"]),
                                   enabled=jax.process_index() == 0) as writer, stops.StopSignals() as signals:
            yield Outputs(checkpointer, writer, evaluator, signals), state


def rebuild(config, run_flags, loop_fields: tuple = algorithms.OFFLINE_FIELDS, num_devices: int = 0) -> Run:
    """The Run of `config` and the run flags (dataset, env_name, sweep, seed, num_seeds: the
    script's FLAGS, or a saved run's as a namespace), without a work directory."""
    algorithm = algorithms.algorithm_for(config, loop_fields)
    members = algorithms.run_members(algorithm, config, run_flags.sweep or [], run_flags.seed, run_flags.num_seeds)
    mesh = multiseed.run_mesh(len(members.seeds), num_devices)
    return Run(config, algorithm, members, mesh, sources.load(run_flags, config))


def start(flag_values, loop_fields: tuple = algorithms.OFFLINE_FIELDS, check: Optional[Callable] = None,
          prefix: str = "", needs_env: bool = False) -> Run:
    """JAX started for the run's devices; the config checked (`check`, then every field read by
    someone); the members, mesh and data; the work directory opened (a resume must match its
    config.json) and config.json written; the run described in two lines."""
    devices.start_jax(flag_values.num_seeds, flag_values.distributed, sweep.num_points(flag_values.sweep))
    config = flag_values.config
    if check is not None:
        check(config)
    run = rebuild(config, flag_values, loop_fields, flag_values.num_devices)
    if needs_env and run.source.make_env is None:
        raise cli.UserError(f"{flag_values.dataset} names no env to run in: pass --env_name")
    run.workdir, resuming = rundir.open_workdir(flag_values, config, prefix)
    grid = f" x {len(run.members.grid())} sweep points" if run.members.fields else ""
    print(f"{run.source.describe()}; {flag_values.num_seeds} seed(s){grid} on {run.mesh.devices.size} "
          f"{jax.devices()[0].platform} device(s); writing to {run.workdir}", *run.source.notes, sep="\n")
    if not resuming and jax.process_index() == 0:
        rundir.write_config(run.workdir, flag_values, config, run.source, run.mesh)
    return run
