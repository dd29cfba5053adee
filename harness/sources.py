"""Where a run's data and evaluation env come from: a Minari id (a local D4RL-style one built
on first use from the shipped policies or the maze controllers), or a D4RL-format file with
the env named by --env_name or inferred from a D4RL file name.
"""

import dataclasses
import os
from typing import Any, Callable, Optional

import numpy as np

import dataset as dataset_lib
import evaluation
from behavior import d4rl_datasets, datasets as locomotion, ids, mazes
from harness import families
from harness.cli import UserError


def ensure_local(dataset_id: str) -> tuple[str, list[str]]:
    """The id to load for `dataset_id`, and a note when a former name is involved: a `local/...`
    set (behavior/ids.py) is built when missing (locomotion from the shipped SAC policies, a maze set,
    or a D4RL AntMaze set); a former name loads the set, and a set still stored under a former
    name loads from there."""
    import minari  # heavy: imported when a dataset is loaded

    stored, current = set(minari.list_local_datasets()), ids.current(dataset_id)
    names = [dataset_id] + [name for name in [current] + ids.former_names(current) if name != dataset_id]
    load = next((name for name in names if name in stored), current)
    if load not in stored:
        for ensure in (locomotion.ensure_dataset, mazes.ensure_dataset, d4rl_datasets.ensure_dataset):
            if ensure(load):
                break
    if load == dataset_id == current:
        return load, []
    return load, [f"note: {dataset_id} and {current} name the same data (behavior/ids.py); loading {load}"]


def load_data(flag_values, config) -> tuple:
    """The dataset, its info, the evaluation env's constructor (taking actions in [-1, 1]), the
    lines to print about what was assumed or changed, and whether the env was only inferred from
    a D4RL-like file name.

    The env is --env_name, else the dataset's own (Minari; Kitchen and Adroit scored as D4RL's),
    else for a D4RL file the env its name implies (`families.d4rl_env`: locomotion -v4, AntMaze
    D4RL's rebuilt, Adroit AdroitHand*-v1). A file's actions are mapped from that env's bounds."""
    source, env_id, env_kwargs, notes = flag_values.dataset, flag_values.env_name, {}, []
    is_file = dataset_lib.is_file_source(source)
    d4rl = families.d4rl_env(source) if is_file else None
    inferred = d4rl is not None and env_id is None  # the env only from a D4RL-like file name
    if inferred:
        env_id, env_kwargs = d4rl
        family = families.d4rl_family(source)
        notes.append(f"{os.path.basename(source)} is named as a D4RL {family} file: evaluating in {env_id}"
                     f"{' ' + str(env_kwargs) if env_kwargs else ''} ({families.WHY_ENV[family]}; "
                     "pass --env_name for another env)")
    elif d4rl and env_id.endswith("-v5"):
        notes.append(f"note: {env_id} changed some MuJoCo models after D4RL recorded {os.path.basename(source)}; "
                     f"{d4rl[0]} keeps them")
    if is_file:  # D4RL's Kitchen files: refused by name, or by their width when FrankaKitchen is named
        families.check_not_d4rl_kitchen(source, families.file_obs_dim(source)
                                        if env_id and env_id.startswith("FrankaKitchen") else None)
    try:
        bounds = evaluation.action_bounds(env_id, **env_kwargs) if env_id else None
    except Exception as e:  # unknown env id, missing extras
        if not (inferred and config.eval_episodes == 0):
            raise UserError(env_error(env_id, e)) from e
        # Only inferred from the file's name, and no evaluation asked for: train without it.
        notes.append(f"({env_id} is not usable here: {type(e).__name__}: {e}; no evaluation env)")
        env_id, bounds, inferred = None, None, False
    try:
        if not is_file:
            source, id_notes = ensure_local(source)
            notes += id_notes
        data, info = dataset_lib.load_dataset(source, config.reward_transform,
                                              file_action_bounds=(-1.0, 1.0) if bounds is None else bounds)
    except dataset_lib.DatasetError as e:
        raise UserError(str(e)) from e
    # (Data in [-1, 1] may have been recorded through RescaleAction, as evaluation.make_env makes the env.)
    if bounds is not None and info.actions_rescaled and not (
            np.allclose(bounds[0], info.action_low) and np.allclose(bounds[1], info.action_high)):
        raise UserError(f"--env_name={env_id} has action bounds [{bounds[0]}, {bounds[1]}], but {source} was "
                        f"recorded with [{list(info.action_low)}, {list(info.action_high)}]")
    make_env = info.make_env
    if env_id:
        make_env = lambda **kwargs: evaluation.make_env(env_id, **env_kwargs, **kwargs)  # noqa: E731
    protocol = None if env_id else families.minari_protocol(info)
    if protocol:  # a Minari Kitchen or Adroit set: D4RL's evaluation and references
        make_env, ref_min, ref_max, ref_note = protocol
        info = dataclasses.replace(info, ref_min_score=ref_min, ref_max_score=ref_max)
        notes += [ref_note] if ref_note else []
    if config.get("eval_max_episode_steps"):
        limit, env_maker = int(config.eval_max_episode_steps), make_env
        make_env = lambda **kwargs: env_maker(max_episode_steps=limit, **kwargs)  # noqa: E731
        notes.append(f"evaluation episodes last at most {limit} env steps (config.eval_max_episode_steps)")
    if info.actions_rescaled:
        notes.append(f"actions mapped from the env's bounds [{min(info.action_low):g}, {max(info.action_high):g}] "
                     "onto [-1, 1]; the policy acts there and the env is wrapped in RescaleAction")
    if info.clipped_action_rows:
        notes.append(f"clipped {info.clipped_action_rows} action row(s) into the bounds (at most "
                     f"{info.max_action_violation:.3g} outside)")
    if is_file and families.d4rl_family(source) == "antmaze":
        info = dataclasses.replace(info, reading=families.antmaze_reading(source, data, info.dropped_timeout_rows))
        notes.append(info.reading)
    elif info.dropped_timeout_rows:
        notes.append(f"dropped {info.dropped_timeout_rows} timeout row(s), as d4rl.qlearning_dataset does")
    env_id = env_id or info.env_id
    notes += [n for n in [evaluation.protocol_note(env_id)] if n]
    if is_file and families.d4rl_family(source) == "antmaze" and config.reward_transform != "antmaze":
        notes.append(f"note: config.reward_transform={config.reward_transform!r} on an AntMaze file; the paper's "
                     "is 'antmaze' (r - 1, configs/iql_antmaze.py)")
    return data, dataclasses.replace(info, env_id=env_id), make_env, notes, inferred


def env_error(env_id: Optional[str], error: Exception) -> str:
    """The project's own message for an env that cannot be built: the env and the package versions."""
    name, versions = env_id or "of the dataset", ", ".join(
        f"{p} {evaluation.package_version(p)}" for p in ("gymnasium", "gymnasium-robotics", "mujoco"))
    return (f"the evaluation env {name} cannot be built: {type(error).__name__}: {error} ({versions}). Install "
            "what it needs, pass --env_name for another env, or set config.eval_episodes=0 to train without evaluation")


@dataclasses.dataclass(frozen=True)
class Source:
    """A run's data and evaluation env, checked against each other."""

    data: Any  # dataset.Dataset on the host
    info: Any  # dataset.DatasetInfo
    make_env: Optional[Callable]  # the evaluation env (acting in [-1, 1]), or None
    ref_min: Optional[float]  # reference returns of the normalised score
    ref_max: Optional[float]
    notes: tuple  # what was assumed or changed, to print

    def describe(self) -> str:
        data, info = self.data, self.info
        return (f"{info.name}: {data.size} transitions, {info.num_episodes} episodes, obs "
                f"{data.observations.shape[1]}, act {data.actions.shape[1]}; rewards x{info.reward_scale:.4g} "
                f"{info.reward_shift:+g}; reference returns {self.ref_min} / {self.ref_max}")


def load(flag_values, config) -> Source:
    """`load_data`, then the checks a run needs: the batch fits the data, and the evaluation env
    (when there is one or evaluation is asked for) takes the data's observations and actions."""
    data, info, make_env, notes, env_inferred = load_data(flag_values, config)
    if config.batch_size > data.size:
        raise UserError(f"config.batch_size={config.batch_size} is larger than the dataset ({data.size} transitions)")
    ref_min = config.ref_min_score if config.ref_min_score is not None else info.ref_min_score
    ref_max = config.ref_max_score if config.ref_max_score is not None else info.ref_max_score
    if make_env is not None or config.eval_episodes > 0:
        if make_env is None:
            raise UserError(f"{flag_values.dataset} names no evaluation env: pass --env_name (e.g. Hopper-v5) "
                            "or set config.eval_episodes=0")
        try:
            env = make_env()
        except Exception as e:  # unknown env id, missing extras, an upstream bug
            if not (env_inferred and config.eval_episodes == 0):
                raise UserError(env_error(info.env_id, e)) from e
            env = None
        try:
            if env is not None:
                evaluation.check_env(env, data.observations.shape[1], data.actions.shape[1])
                env.close()
        except Exception as e:  # wrong shapes
            if not (env_inferred and config.eval_episodes == 0):
                raise UserError(f"evaluation env {info.env_id or ''}: {type(e).__name__}: {e}") from e
            # A file merely named like D4RL data, and no evaluation asked for: train without an env.
            notes.append(f"(the env inferred from the file's name does not fit the data: {e}; no evaluation env)")
            make_env = None
        if env is None and make_env is not None:
            notes.append(f"({info.env_id} cannot be built here; no evaluation env)")
            make_env = None
    return Source(data, info, make_env, ref_min, ref_max, tuple(notes))
