"""The parts of a training run that train_offline.py and train_finetune.py share.

`Experiment.setup` checks the config, loads the dataset and its evaluation env
(`harness/sources.py`), checks the env, places the data on the seeds'
device mesh, writes `config.json` and installs the stop-signal handlers (restored by `close`:
use the experiment as a context manager). `create_agents` makes one agent per seed;
`offline_loop` is the offline training loop of both scripts; `evaluate` runs every seed's
episodes side by side and writes `eval.csv` rows; `log_train` writes `train.csv` rows;
`finish` saves the agents and writes `summary.json`.
"""

import dataclasses
import itertools
import json
import os
import signal
import sys
import time
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags
from tqdm import tqdm

import evaluation
from harness import cli, multiseed, outputs, sources
from idql import IDQLLearner
from learner import IQLLearner


@dataclasses.dataclass(frozen=True)
class Algorithm:
    """What the scripts need to know of an algorithm: its agent class, and what changes when
    fine-tuning's online phase starts."""

    agent_class: Any
    for_online_phase: Callable[[Any], Any] = lambda agents: agents


# config.algo -> Algorithm (an explicit table, never a name lookup in globals()).
ALGORITHMS = {
    "iql": Algorithm(IQLLearner),
    # IDQL fine-tunes only its critic online; the diffusion actor stays as pretrained.
    "idql": Algorithm(IDQLLearner, for_online_phase=lambda agents: agents.replace(train_actor=False)),
}


# One key per seed folded with the same counter, in one compiled call.
fold_keys = jax.jit(jax.vmap(jax.random.fold_in, in_axes=(0, None)))


def fail(message: str) -> None:
    raise cli.UserError(message)


# Who reads the fields of a run's config besides its agent (`agent_class.fields`): the data
# loading (sources.load_data, setup) and the training loops (OFFLINE_FIELDS here; fine-tuning
# adds its own). A field nobody reads is an error, so a typo never trains the default.
DATA_FIELDS = ("reward_transform", "ref_min_score", "ref_max_score")
OFFLINE_FIELDS = ("algo", "batch_size", "max_steps", "steps_per_call", "log_interval", "eval_interval",
                  "eval_episodes", "eval_max_episode_steps", "eval_temperature", "checkpoint_interval",
                  "keep_checkpoints", "tensorboard")


def check_intervals(config, total_steps_field: str = "max_steps") -> None:
    for name in ("batch_size", total_steps_field, "steps_per_call", "log_interval", "eval_interval"):
        if config[name] <= 0:
            fail(f"config.{name} must be > 0, got {config[name]}")
    if config.eval_episodes < 0:
        fail(f"config.eval_episodes must be >= 0, got {config.eval_episodes}")
    for name in (total_steps_field, "log_interval", "eval_interval", "checkpoint_interval"):
        if config[name] % config.steps_per_call:
            fail(f"config.{name}={config[name]} is not a multiple of config.steps_per_call="
                 f"{config.steps_per_call}: the loop logs and evaluates between compiled calls")


def default_workdir(config, dataset: str, seed: int, prefix: str = "") -> str:
    name = os.path.splitext(os.path.basename(dataset))[0] if dataset.endswith((".hdf5", ".h5", ".npz")) else dataset
    return os.path.join("runs", f"{prefix}{config.algo}_{name.replace('/', '_')}_seed{seed}")


def define_run_flags(flag_values, default_dataset: str = "local/hopper/medium-v0") -> None:
    """The flags both training scripts take (everything but --config and their own)."""
    flags.DEFINE_string("dataset", default_dataset,
                        "Minari dataset id, or a path to a .hdf5/.h5/.npz file. Ids local/<env>/<kind>-v0 and "
                        "local/antmaze|pointmaze/<kind>-v1 with shipped behavior policies (see behavior/collect.py) "
                        "are built on first use.",
                        flag_values=flag_values)
    flags.DEFINE_string("workdir", None, "Folder for everything the run writes; an existing one with checkpoints is "
                        "resumed (default: runs/<algo>_<dataset>_seed<seed>).", flag_values=flag_values)
    flags.DEFINE_integer("seed", 0, "Seed of the run; every random draw derives from it.", flag_values=flag_values)
    flags.DEFINE_integer("num_seeds", 1, "Train seeds seed .. seed+num_seeds-1 together in this process.",
                         flag_values=flag_values)
    flags.DEFINE_integer("num_devices", 0, "Devices to split the seeds over (0: as many as divide num_seeds).",
                         flag_values=flag_values)
    flags.DEFINE_string("env_name", None, "Gymnasium id of the env (needed for .hdf5/.npz datasets).",
                        flag_values=flag_values)
    flags.DEFINE_bool("allow_config_change", False, "Resume a work directory's checkpoints even though the config "
                      "or flags differ from the run that wrote them.", flag_values=flag_values)
    flags.DEFINE_bool("video", False, "At the end, render one evaluation episode of the first seed to "
                      "<workdir>/video.mp4 (MuJoCo needs MUJOCO_GL=egl or osmesa).", flag_values=flag_values)
    flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize() first (multi-host jobs).",
                      flag_values=flag_values)


def config_changes(saved: dict, config) -> list[str]:
    """The fields whose values differ between `config` and `saved` (a config.json's "config"),
    compared as JSON (tuples and lists alike)."""
    now = json.loads(json.dumps(config.to_dict(), default=str))
    return sorted(k for k in set(now) | set(saved) if now.get(k) != saved.get(k))


def check_same_run(workdir: str, config, run_flags: dict, allow_change: bool) -> None:
    """Resume only the run that wrote the checkpoints: same config and flags, unless allowed."""
    with open(os.path.join(workdir, "config.json")) as f:
        saved = json.load(f)
    changed = [f"config.{k}" for k in config_changes(saved["config"], config)]
    changed += sorted(f"--{k}" for k, v in run_flags.items() if saved["flags"].get(k) != v)
    if changed and not allow_change:
        fail(f"{workdir} holds checkpoints of a run with different {', '.join(changed)}; rerun with the "
             "same settings to resume it, pass --allow_config_change to resume with the new ones, or "
             "choose another --workdir")
    if changed:
        print(f"resuming with changed {', '.join(changed)} (--allow_config_change)")


def start_jax(flag_values) -> None:
    """Before JAX's backend starts: one host device per core on a CPU for several seeds, and
    `jax.distributed.initialize()` for --distributed."""
    if flag_values.num_seeds < 1:
        fail(f"--num_seeds must be >= 1, got {flag_values.num_seeds}")
    request_cpu_devices(flag_values.num_seeds)
    init_distributed(flag_values.distributed)


def init_distributed(enabled: bool) -> None:
    """`jax.distributed.initialize()` for --distributed. On a cluster JAX finds the processes
    itself (SLURM, Open MPI, Kubernetes, Cloud TPU); elsewhere (e.g. several processes on one
    machine) set JAX_COORDINATOR_ADDRESS=host:port, JAX_NUM_PROCESSES and JAX_PROCESS_ID."""
    if not enabled:
        return
    num, pid = os.environ.get("JAX_NUM_PROCESSES"), os.environ.get("JAX_PROCESS_ID")
    if (num is None) != (pid is None):
        fail("set both JAX_NUM_PROCESSES and JAX_PROCESS_ID, or neither (cluster auto-detection)")
    kwargs = {} if num is None else {"num_processes": int(num), "process_id": int(pid)}
    jax.distributed.initialize(**kwargs)


def request_cpu_devices(num_seeds: int) -> None:
    """On a CPU-only machine, ask XLA for one host device per core so seeds train side by
    side; must run before JAX's backend starts (no effect after, nor on GPU/TPU devices)."""
    if num_seeds > 1 and "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
        count = multiseed.num_local_cpu_devices(num_seeds)
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={count}"


@dataclasses.dataclass
class Experiment:
    config: Any
    seeds: list[int]
    workdir: str
    mesh: Any
    data: Any  # dataset.Dataset, replicated over the mesh
    info: Any  # dataset.DatasetInfo
    ref_min: Optional[float]
    ref_max: Optional[float]
    make_env: Optional[Callable]
    algorithm: Algorithm
    writer: Any
    is_main: bool
    eval_keys: list = dataclasses.field(default_factory=list)
    video: bool = False
    checkpointer: Any = None
    stop_signal: Optional[str] = None
    eval_seconds: float = 0.0
    start_time: float = dataclasses.field(default_factory=time.perf_counter)
    previous_handlers: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def setup(cls, flag_values, config, extra_json: Optional[dict] = None, workdir_prefix: str = "",
              loop_fields: tuple = OFFLINE_FIELDS) -> "Experiment":
        if config.algo not in ALGORITHMS:
            fail(f"config.algo={config.algo!r} is not one of {sorted(ALGORITHMS)}")
        agent_fields = ALGORITHMS[config.algo].agent_class.fields(dict.fromkeys(config))
        cli.check_fields(config, {*agent_fields, *DATA_FIELDS, *loop_fields})
        seeds = [flag_values.seed + i for i in range(flag_values.num_seeds)]
        try:
            mesh = multiseed.make_mesh(len(seeds), flag_values.num_devices)
        except ValueError as e:
            fail(str(e))

        workdir = flag_values.workdir or default_workdir(config, flag_values.dataset, flag_values.seed, workdir_prefix)
        run_flags = {k: getattr(flag_values, k) for k in ("dataset", "seed", "num_seeds", "env_name")}
        checkpointer = outputs.Checkpointer(workdir, config.get("keep_checkpoints", 3))
        resuming = bool(checkpointer.steps())
        if resuming:
            check_same_run(workdir, config, run_flags, flag_values.allow_config_change)
        elif any(os.path.exists(os.path.join(workdir, f)) for f in ("eval.csv", "train.csv")):
            fail(f"{workdir} already holds a run without checkpoints; choose another --workdir or move it away")
        os.makedirs(workdir, exist_ok=True)

        data, info, make_env, notes, env_inferred = sources.load_data(flag_values, config)
        if config.batch_size > data.size:
            fail(f"config.batch_size={config.batch_size} is larger than the dataset ({data.size} transitions)")
        ref_min = config.ref_min_score if config.ref_min_score is not None else info.ref_min_score
        ref_max = config.ref_max_score if config.ref_max_score is not None else info.ref_max_score
        obs_dim, action_dim = data.observations.shape[1], data.actions.shape[1]
        if make_env is not None or config.eval_episodes > 0:
            if make_env is None:
                fail(f"{flag_values.dataset} names no evaluation env: pass --env_name (e.g. Hopper-v5) "
                     "or set config.eval_episodes=0")
            try:
                env = make_env()
                evaluation.check_env(env, obs_dim, action_dim)
                env.close()
            except Exception as e:  # unknown env id, missing extras, wrong shapes
                if not (env_inferred and config.eval_episodes == 0):
                    fail(f"evaluation env: {type(e).__name__}: {e}")
                # A file merely named like D4RL data, and no evaluation asked for: train without an env.
                notes.append(f"(the env inferred from the file's name does not fit the data: {e}; no evaluation env)")
                make_env = None

        print(f"{info.name}: {data.size} transitions, {info.num_episodes} episodes, obs {obs_dim}, act {action_dim}; "
              f"rewards x{info.reward_scale:.4g} {info.reward_shift:+g}; reference returns {ref_min} / {ref_max}; "
              f"{len(seeds)} seed(s) on {mesh.devices.size} {jax.devices()[0].platform} device(s); writing to {workdir}")
        for note in notes:
            print(note)
        is_main = jax.process_index() == 0
        if is_main and not resuming:
            outputs.write_json(os.path.join(workdir, "config.json"), {
                "config": config.to_dict(),
                "flags": run_flags | {"workdir": workdir},
                "dataset": {"size": data.size, "episodes": info.num_episodes, "reward_scale": info.reward_scale,
                            "reward_shift": info.reward_shift, "ref_min_score": ref_min, "ref_max_score": ref_max,
                            "dropped_timeout_rows": info.dropped_timeout_rows,
                            # The policy acts in [-1, 1]; the env's bounds [low, high] map onto it.
                            "actions": {"low": info.action_low, "high": info.action_high,
                                        "rescaled_to_unit_box": info.actions_rescaled,
                                        "clipped_rows": info.clipped_action_rows,
                                        "max_violation": info.max_action_violation}},
                "devices": [str(d) for d in mesh.devices.flat],
                "command": " ".join(sys.argv),
                **(extra_json or {}),
            })
        eval_keys = [multiseed.seed_streams(s)["evaluation"] for s in seeds]
        exp = cls(config=config, seeds=seeds, workdir=workdir, mesh=mesh, data=multiseed.replicate(data, mesh),
                  info=info, ref_min=ref_min, ref_max=ref_max, make_env=make_env,
                  algorithm=ALGORITHMS[config.algo], writer=None, is_main=is_main, eval_keys=eval_keys,
                  video=flag_values.video, checkpointer=checkpointer)
        exp._install_signal_handlers()
        return exp

    # ---- checkpoints, resume, preemption ----

    def _install_signal_handlers(self) -> None:
        """SIGTERM (preemption) and SIGINT (Ctrl-C) ask the loop to checkpoint and stop; `close`
        puts the previous handlers back."""
        def request_stop(signum, frame):
            del frame
            self.stop_signal = signal.Signals(signum).name

        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self.previous_handlers[sig] = signal.signal(sig, request_stop)
            except ValueError:  # not the main thread (e.g. some notebook runners)
                pass

    def close(self) -> None:
        """Restore the signal handlers that were there before `setup` and close the logs."""
        for sig, handler in self.previous_handlers.items():
            signal.signal(sig, handler)
        self.previous_handlers.clear()
        if self.writer is not None:
            self.writer.close()

    def __enter__(self) -> "Experiment":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def restore(self, state_template) -> Optional[dict]:
        """The newest checkpoint's state (None for a fresh run), and open the logs to match.

        `state_template` is the state's pytree, or a function of the file's raw contents
        returning it (for states whose structure depends on what was saved)."""
        pick = state_template if callable(state_template) else (lambda raw: state_template)
        template = lambda raw: multiseed.fetch(pick(raw))  # noqa: E731
        restored = self.checkpointer.restore(template) if self.checkpointer.steps() else None
        resume_step = None
        if restored is not None:
            resume_step, state = restored
            self.eval_seconds = float(state.get("eval_seconds", 0.0))
            print(f"resuming from {self.checkpointer.path(resume_step)} (step {resume_step})")
        elif self.checkpointer.steps():
            fail(f"no checkpoint in {self.checkpointer.folder} could be read back; move the folder away to start over")
        if self.is_main:
            self.writer = outputs.MetricsWriter(self.workdir, tensorboard=self.config.tensorboard,
                                                resume_step=resume_step)
        return None if restored is None else restored[1]

    def checkpoint(self, step: int, state: dict, last_step: int, counter: Optional[int] = None) -> None:
        """Save when `counter` (default: the step) reaches a multiple of checkpoint_interval or
        `last_step`, and when a stop signal arrived (then stop). The file is named by `step`."""
        interval = self.config.get("checkpoint_interval", 0)
        counter = step if counter is None else counter
        if self.stop_signal or counter == last_step or (interval and counter % interval == 0):
            host = multiseed.fetch({**state, "eval_seconds": self.eval_seconds})  # every process: a collective
            if self.is_main:
                self.checkpointer.save(step, host)
        if self.stop_signal:
            raise cli.Stopped(self.stop_signal, f"stopped by {self.stop_signal} at step {step}; saved "
                              f"{self.checkpointer.path(step)}: run the same command again to resume")

    def check_finite(self, step: int, agents, metrics: dict, first: Optional[int] = None) -> None:
        """Stop, naming the step and the quantity, if a loss or a parameter is NaN/inf; the
        last checkpoint (written before this step) stays the newest."""
        if bool(multiseed.all_finite((metrics, agents))):
            return
        metrics = multiseed.fetch(metrics)
        names = sorted(k for k, v in metrics.items() if not np.all(np.isfinite(v)))
        what = f"training metric(s) {names}" if names else "parameters"
        last = self.checkpointer.steps()
        kept = f"the last good checkpoint is {self.checkpointer.path(last[0])}" if last else "no checkpoint was written"
        first = step - self.config.steps_per_call + 1 if first is None else first
        span = f"step {step}" if first >= step else f"steps {first}..{step}"
        fail(f"non-finite {what} in {span}; stopped; {kept}")

    # ---- agents and training ----

    def create_agents(self, max_steps: Optional[int] = None):
        """One agent per seed, stacked on the seed axis and sharded over the mesh; `max_steps`
        (fine-tuning's) replaces the config's as the span of the actor's schedule."""
        obs, act = self.data.observations[0], self.data.actions[0]
        agent_class = self.algorithm.agent_class
        fields = agent_class.fields(self.config) | ({} if max_steps is None else {"max_steps": max_steps})
        create = lambda key: agent_class.create(key, obs, act, fields)  # noqa: E731
        try:
            return multiseed.create_agents(create, self.seeds, self.mesh)
        except ValueError as e:
            fail(str(e))

    def offline_loop(self, agents, start: int, last_step: int, log_extra: Optional[dict] = None,
                     eval_extra: Optional[dict] = None, state_extra: Optional[dict] = None, desc: str = "offline",
                     eval_interval: Optional[int] = None):
        """Offline training from step `start` to `last_step`: `steps_per_call` updates per
        compiled call for all seeds, with logging, evaluation and checkpoints between calls.

        `log_extra` / `eval_extra` are extra columns of train.csv / eval.csv rows; checkpoints
        hold {"agents", "step", **state_extra}; `eval_interval` defaults to the config's.
        Returns the trained agents."""
        config, k = self.config, self.config.steps_per_call
        eval_interval = eval_interval or config.eval_interval
        with tqdm(total=last_step, initial=start, unit="step", desc=desc, dynamic_ncols=True,
                  disable=not self.is_main) as bar:
            for step in range(start + k, last_step + 1, k):
                agents, metrics = multiseed.update_n(agents, self.data, k, config.batch_size)
                self.check_finite(step, agents, metrics)
                bar.update(k)
                if step % config.log_interval == 0:
                    self.log_train(step, metrics, log_extra)
                if self.due(step, eval_interval, last_step):
                    bar.set_postfix(score=f"{self.evaluate(agents, step, eval_extra):.1f}")
                self.checkpoint(step, {"agents": agents, "step": step, **(state_extra or {})}, last_step)
        return agents

    # ---- logs and evaluation ----

    def log_train(self, step: int, metrics: dict, extra: Optional[dict] = None) -> None:
        """Write one train.csv row per seed."""
        metrics = multiseed.fetch(metrics)  # {name: (num_seeds,)}
        if self.is_main:
            for i, seed in enumerate(self.seeds):
                self.writer.write("train", step, seed, {**(extra or {}), **{k: float(v[i]) for k, v in metrics.items()}})

    def evaluate(self, agents, step: int, extra: Optional[dict] = None) -> float:
        """Every seed's `eval_episodes` episodes in one vector env; one eval.csv row per seed.

        Returns the mean over seeds of the normalised score (or of the return without refs).
        """
        tic = time.perf_counter()
        episodes, n = self.config.eval_episodes, len(self.seeds)
        env_seeds = [self._episode_seed(key, step) + j for key in self.eval_keys for j in range(episodes)]
        policy = self._policy(agents, episodes, step)
        shown = []
        if self.is_main:
            result = evaluation.evaluate(policy, self.make_env, len(env_seeds), env_seeds)
            returns, successes = result["returns"].reshape(n, episodes), result["successes"]
            if successes is not None:
                successes = successes.reshape(n, episodes)
            for i, seed in enumerate(self.seeds):
                mean = float(returns[i].mean())
                score = evaluation.normalized_score(mean, self.ref_min, self.ref_max)
                score = None if score is None else float(score)
                # Maze envs report success; their episodes end at the goal with return 1, so
                # the normalised score with refs (0, 1) is 100 x this rate, as D4RL's AntMaze.
                success = {} if successes is None else {"success_rate": float(successes[i].mean())}
                self.writer.write("eval", step, seed, {"return": mean, "normalized_score": score,
                                                       "return_std": float(returns[i].std()), **success,
                                                       **(extra or {})})
                shown.append(mean if score is None else score)
        self.eval_seconds += time.perf_counter() - tic
        return float(np.mean(shown)) if shown else float("nan")

    @staticmethod
    def _episode_seed(eval_key, step: int) -> int:
        """Seed of a seed's first evaluation episode at `step` (its eval key folded with the step)."""
        return int(jax.random.randint(jax.random.fold_in(eval_key, step), (), 0, 2**30))

    def _policy(self, agents, episodes: int, step: int) -> Callable:
        """(num_seeds * episodes, obs_dim) observations -> actions, seed i's agent acting on rows
        i * episodes .. (i + 1) * episodes - 1. Each call (env step) acts with a fresh key: the
        seed's eval key folded with the training step, then with the call's index, so a
        stochastic policy (IDQL's sampler) draws anew at every env step of every evaluation."""
        acting = agents if jax.process_count() == 1 else jax.device_put(multiseed.fetch(agents), jax.local_devices()[0])
        n = len(self.seeds)
        keys = jnp.stack([jax.random.fold_in(key, step) for key in self.eval_keys])
        calls = itertools.count()

        def policy(obs):
            actions = multiseed.sample_actions(acting, obs.reshape(n, episodes, -1), fold_keys(keys, next(calls)),
                                               self.config.get("eval_temperature", 0.0))
            return np.asarray(actions).reshape(n * episodes, -1)

        return policy

    def record_video(self, agents, step: int) -> Optional[str]:
        """`--video`: the first seed's first evaluation episode at `step`, to <workdir>/video.mp4."""
        if not self.video or self.make_env is None:
            if self.video and self.is_main:
                print("--video: no evaluation env is known for this dataset (pass --env_name); no video written")
            return None
        policy, n = self._policy(agents, 1, step), len(self.seeds)  # every process: _policy gathers the agents
        if not self.is_main:
            return None
        first_seed = lambda obs: policy(np.repeat(obs, n, axis=0))[:1]  # noqa: E731  (the other seeds idle)
        path = os.path.join(self.workdir, "video.mp4")
        try:
            result = evaluation.record_video(first_seed, self.make_env, self._episode_seed(self.eval_keys[0], step),
                                             path)
        except Exception as e:  # rendering is optional: the run's results are already saved
            hint = "" if os.environ.get("MUJOCO_GL") else " (MuJoCo envs render off-screen with MUJOCO_GL=egl or osmesa)"
            print(f"--video: no video written: {type(e).__name__}: {e}{hint}")
            return None
        print(f"wrote {path} (seed {self.seeds[0]}, return {result['return']:.1f}, {result['length']} steps)")
        return path

    def due(self, step: int, interval: int, last_step: int) -> bool:
        return self.config.eval_episodes > 0 and (step % interval == 0 or step == last_step)

    def finish(self, agents, total_updates: int, extra: Optional[dict] = None) -> dict:
        """Save the agents (agent.msgpack) and write summary.json."""
        wall = time.perf_counter() - self.start_time
        summary = {}
        host = multiseed.fetch(agents)  # every process: a collective under jax.distributed
        if self.is_main:
            outputs.save_pytree(os.path.join(self.workdir, "agent.msgpack"), host)
            summary = outputs.summarize(self.writer.rows.get("eval", []))
            summary.update(steps=total_updates, wall_time_s=wall, eval_time_fraction=self.eval_seconds / wall,
                           **(extra or {}))
            outputs.write_json(os.path.join(self.workdir, "summary.json"), summary)
            self.writer.close()
            if summary.get("metric"):
                print(f"final {summary['metric']}: {summary['last_mean']:.2f} +- {summary['last_std']:.2f} "
                      f"(best {summary['best_mean']:.2f}); {wall:.0f} s, "
                      f"{100 * self.eval_seconds / wall:.1f}% in evaluation")
        self.record_video(agents, total_updates)  # last: the results are saved whatever rendering does
        return summary
