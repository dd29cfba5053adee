"""Offline datasets as device arrays: loading, validation, episode splitting, reward scaling.

`Dataset` is a pytree of flat transition arrays kept on the device and sampled inside jit.
Three loaders produce it -- a Minari dataset id, a D4RL-format hdf5 file, or an npz file with
the same keys -- and all three go through `from_arrays`, the one place where episodes are
split, actions clipped and rewards preprocessed (IQL paper, Appendix B / the original code):

- masks = 1 - terminals: 0 only at true terminals, so time-limit truncations bootstrap;
- dones = episode ends: a terminal, a timeout, or a next observation that does not continue
  the episode; used to split episodes (for the locomotion reward scale);
- actions: the env's action bounds [low, high] are mapped affinely onto [-1, 1] (the policy
  acts there; the env is wrapped in `RescaleAction` to match); values a little outside the
  bounds are clipped and counted, gross violations are an error; then clipped to
  +-(1 - 1e-5) as the original;
- D4RL-format files: rows at timeouts are dropped, as `d4rl.qlearning_dataset` (what the
  original trained on) does, even when the file holds `next_observations`;
- rewards: `locomotion` scales by 1000 / (max - min episode return), `antmaze` subtracts 1
  (and sets masks = 0 where the sparse reward is 1, D4RL's AntMaze terminals), `none` leaves
  them. The same (scale, shift) is kept in `DatasetInfo` for online data.

Minari episodes hold T+1 observations and T actions; `next_observations[t]` is
`observations[t + 1]` of the same episode, so no transition crosses an episode boundary.
"""

import dataclasses
import json
import os
import zipfile
from typing import Any, Callable, Optional

import flax.struct as struct
import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

import evaluation

ACTION_CLIP = 1.0 - 1e-5
# Actions outside the bounds by more than this fraction of the range are an error; less is
# clipped (some real datasets, e.g. Adroit and Kitchen, hold actions slightly outside).
MAX_ACTION_VIOLATION = 0.1
REWARD_TRANSFORMS = ("locomotion", "antmaze", "none")

# D4RL reference returns (random / expert policy) for D4RL-format files whose name starts
# with the environment family, e.g. `hopper-medium-v2.hdf5` (d4rl/infos.py REF_MIN_SCORE /
# REF_MAX_SCORE, the same for every dataset of a family). Minari datasets carry their own.
D4RL_REFERENCE_SCORES = {
    "hopper": (-20.272305, 3234.3),
    "halfcheetah": (-280.178953, 12135.0),
    "walker2d": (1.629008, 4592.3),
    "ant": (-325.6, 3879.7),
    "antmaze": (0.0, 1.0),  # the return is the success: 100 x the success rate
    "pen": (96.262799, 3076.8331017826877),
    "door": (-56.512833, 2880.5693087298737),
    "hammer": (-274.856578, 12794.134825156867),
    "relocate": (-6.425911, 4233.877797728884),
    "kitchen": (0.0, 4.0),  # the return is the number of the four tasks completed: 25 per task
}

class DatasetError(ValueError):
    """A dataset that cannot be used, with a message naming the problem."""


class Dataset(struct.PyTreeNode):
    """Flat transitions on the device. Every field has N rows.

    observations (N, obs_dim), actions (N, act_dim), rewards (N,) (already preprocessed),
    masks (N,) (1 - terminal), dones (N,) (1 at episode ends), next_observations (N, obs_dim);
    all float32. A batch is a `Dataset` of `batch_size` rows.
    """

    observations: jax.Array
    actions: jax.Array
    rewards: jax.Array
    masks: jax.Array
    dones: jax.Array
    next_observations: jax.Array

    @property
    def size(self) -> int:
        return self.rewards.shape[0]

    def sample(self, key: jax.Array, batch_size: int) -> "Dataset":
        """`batch_size` rows drawn uniformly with replacement; jit-able (shapes are static)."""
        idx = jax.random.randint(key, (batch_size,), 0, self.size)
        return jax.tree.map(lambda x: x[idx], self)


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What a run needs to know about its data besides the arrays."""

    name: str
    num_episodes: int
    reward_scale: float  # preprocessed reward = reward * reward_scale + reward_shift
    reward_shift: float
    ref_min_score: Optional[float] = None  # random-policy return, for the normalised score
    ref_max_score: Optional[float] = None  # expert-policy return
    make_env: Optional[Callable[[], gym.Env]] = None  # evaluation env, when known
    action_low: tuple = ()  # the env's action bounds, which the dataset's actions were mapped from
    action_high: tuple = ()
    actions_rescaled: bool = False  # whether the bounds were not [-1, 1] already
    clipped_action_rows: int = 0  # rows with an action outside the bounds (then clipped)
    max_action_violation: float = 0.0  # how far outside, at most
    dropped_timeout_rows: int = 0  # rows dropped as d4rl.qlearning_dataset drops them
    env_id: Optional[str] = None  # the evaluation env's id, when the data name it
    reading: str = ""  # how a file of a known format was read, when it needs saying (D4RL AntMaze)
    observation_space: Any = None  # a Minari dataset's own (before flattening)


# ----------------------------------------------------------------------------------------------
# The one place for preprocessing.
# ----------------------------------------------------------------------------------------------


def episode_returns(rewards: np.ndarray, dones: np.ndarray) -> np.ndarray:
    """Undiscounted return of every episode, episodes ending where `dones` is 1."""
    episode_ids = np.concatenate([[0], np.cumsum(dones[:-1] > 0)])
    return np.bincount(episode_ids, weights=rewards)


def reward_transform_params(kind: str, rewards: np.ndarray, dones: np.ndarray) -> tuple[float, float]:
    """(scale, shift) of the IQL reward preprocessing `kind` for this dataset."""
    if kind == "locomotion":
        returns = episode_returns(rewards, dones)
        spread = float(returns.max() - returns.min())
        if not spread > 0.0:
            raise DatasetError(
                f"reward_transform='locomotion' divides by the spread of episode returns, but "
                f"all {len(returns)} episode(s) return {returns.max():.6g}; use "
                f"reward_transform='none' for this dataset"
            )
        return 1000.0 / spread, 0.0
    if kind == "antmaze":
        return 1.0, -1.0
    if kind == "none":
        return 1.0, 0.0
    raise DatasetError(f"unknown reward_transform {kind!r}; choose one of {REWARD_TRANSFORMS}")


def _as_float_array(name: str, x: Any, ndim: tuple[int, ...]) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype == object or not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
        raise DatasetError(f"'{name}' must be a numeric array, got dtype {x.dtype}")
    if x.ndim == 2 and 1 in ndim and x.shape[1] == 1:
        x = x[:, 0]  # (N, 1) rewards/terminals, as some files store them
    if x.ndim not in ndim:
        raise DatasetError(f"'{name}' must have {' or '.join(map(str, ndim))} dimension(s), got shape {x.shape}")
    x = x.astype(np.float32) if x.ndim == 1 else x.reshape(x.shape[0], int(np.prod(x.shape[1:]))).astype(np.float32)
    bad = ~np.isfinite(x)
    if bad.any():
        first = int(np.argwhere(bad)[0][0])
        raise DatasetError(f"'{name}' has {int(bad.sum())} NaN/inf value(s), the first at row {first}")
    return x


def from_arrays(
    observations: Any,
    actions: Any,
    rewards: Any,
    terminals: Any,
    timeouts: Any = None,
    next_observations: Any = None,
    reward_transform: str = "none",
    action_bounds: tuple[Any, Any] = (-1.0, 1.0),
    name: str = "arrays",
    keep_timeouts: bool = False,
) -> tuple[Dataset, DatasetInfo]:
    """Build a `Dataset` from D4RL-style flat arrays (N rows each).

    Rows at timeouts are dropped, as D4RL's `qlearning_dataset` does (with `keep_timeouts`,
    for data such as Minari's whose `next_observations` are the true ones, they are kept).
    Without `next_observations`, the next observation of row i is observations[i + 1], and a
    final non-terminal row, whose successor is unknown, is dropped too. With it, an episode
    also ends wherever next_observations[i] differs from observations[i + 1].

    Actions are mapped from `action_bounds` (the env's) onto [-1, 1]; see `scale_actions`.
    """
    if reward_transform not in REWARD_TRANSFORMS:
        raise DatasetError(f"unknown reward_transform {reward_transform!r}; choose one of {REWARD_TRANSFORMS}")
    obs = _as_float_array("observations", observations, (2,))
    act = _as_float_array("actions", actions, (2,))
    rew = _as_float_array("rewards", rewards, (1,))
    term = _as_float_array("terminals", terminals, (1,)) > 0
    n = len(obs)
    tout = np.zeros(n, bool) if timeouts is None else _as_float_array("timeouts", timeouts, (1,)) > 0
    arrays = {"observations": obs, "actions": act, "rewards": rew, "terminals": term, "timeouts": tout}
    if next_observations is not None:
        arrays["next_observations"] = _as_float_array("next_observations", next_observations, (2,))
    lengths = {k: len(v) for k, v in arrays.items()}
    if len(set(lengths.values())) != 1:
        raise DatasetError(f"{name}: arrays have different lengths: {lengths}")
    if n == 0:
        raise DatasetError(f"{name}: the dataset is empty (0 transitions)")
    if next_observations is not None and arrays["next_observations"].shape[1] != obs.shape[1]:
        raise DatasetError(
            f"{name}: next_observations have {arrays['next_observations'].shape[1]} features, "
            f"observations {obs.shape[1]}"
        )

    act, action_info = scale_actions(act, action_bounds, name)

    dropped_timeouts = 0
    if next_observations is None:
        next_obs = np.concatenate([obs[1:], obs[-1:]])
        dropped = tout.copy()
        dropped[-1] |= not term[-1]  # the last row's successor is unknown unless it is terminal
        follows_dropped = np.append(dropped[1:], True)
        dones = term | follows_dropped
        keep = ~dropped
        if not keep.any():
            raise DatasetError(f"{name}: no transition has a known next observation")
        dropped_timeouts = int(tout.sum())
        obs, act, rew, term, next_obs, dones = (x[keep] for x in (obs, act, rew, term, next_obs, dones))
    else:
        next_obs = arrays["next_observations"]
        if not keep_timeouts and tout.any():
            keep = ~tout
            if not keep.any():
                raise DatasetError(f"{name}: every row is a timeout")
            dropped_timeouts = int(tout.sum())
            obs, act, rew, term, tout, next_obs = (x[keep] for x in (obs, act, rew, term, tout, next_obs))
        # An episode ends at a terminal, a timeout, or where the next row does not continue it
        # (which is where a dropped timeout row was).
        jumps = np.append(np.linalg.norm(next_obs[:-1] - obs[1:], axis=-1) > 1e-6, True)
        dones = term | tout | jumps

    scale, shift = reward_transform_params(reward_transform, rew, dones)
    bootstrap_ends = term
    if reward_transform == "antmaze":
        # D4RL's AntMaze files mark a terminal wherever the sparse reward is 1 (its
        # relabel_antmaze_rewards.py) and the original trains on masks = 1 - terminals;
        # continuing data (Minari's, the local sets) carry on past the goal unmarked.
        bootstrap_ends = term | (rew > 0)
    dataset = Dataset(
        observations=jnp.asarray(obs),
        actions=jnp.asarray(act),
        rewards=jnp.asarray(rew * scale + shift),
        masks=jnp.asarray(1.0 - bootstrap_ends.astype(np.float32)),
        dones=jnp.asarray(dones.astype(np.float32)),
        next_observations=jnp.asarray(next_obs),
    )
    info = DatasetInfo(name=name, num_episodes=int(dones.sum()), reward_scale=scale, reward_shift=shift,
                       dropped_timeout_rows=dropped_timeouts, **action_info)
    return dataset, info


def scale_actions(actions: np.ndarray, bounds: tuple[Any, Any], name: str = "arrays") -> tuple[np.ndarray, dict]:
    """Actions in the env's bounds [low, high] -> [-1, 1], the policy's range.

    Values outside the bounds by at most `MAX_ACTION_VIOLATION` of the range are clipped into
    them (and counted in the returned info); more is an error naming how many rows. The result
    is then clipped to +-(1 - 1e-5), as the original does, so that log-probs stay finite.
    Returns (scaled actions, the DatasetInfo fields that describe the mapping).
    """
    low, high = (np.broadcast_to(np.asarray(b, np.float64), actions.shape[1:]) for b in bounds)
    width = high - low
    if not (np.all(np.isfinite(width)) and np.all(width > 0)):
        raise DatasetError(f"{name}: the action space needs finite bounds with low < high to map onto [-1, 1], "
                           f"got [{low}, {high}]")
    violation = np.maximum(low - actions, actions - high) / width  # > 0 outside, as a fraction of the range
    gross = violation > MAX_ACTION_VIOLATION
    if gross.any():
        row, col = np.argwhere(gross)[0]
        raise DatasetError(
            f"{name}: {int(gross.any(axis=1).sum())} action row(s) lie outside the action bounds by more than "
            f"{MAX_ACTION_VIOLATION:.0%} of the range; the first is row {row}, dimension {col}: {actions[row, col]} "
            f"outside [{low[col]}, {high[col]}]"
        )
    outside = violation > 0
    clipped = np.clip(actions, low, high)
    rescaled = not evaluation.is_unit_box(low, high)
    scaled = 2.0 * (clipped - low) / width - 1.0 if rescaled else clipped
    info = {
        "action_low": tuple(float(x) for x in low), "action_high": tuple(float(x) for x in high),
        "actions_rescaled": rescaled, "clipped_action_rows": int(outside.any(axis=1).sum()),
        "max_action_violation": float(np.max(violation * width, initial=0.0)) if outside.any() else 0.0,
    }
    return np.clip(scaled, -ACTION_CLIP, ACTION_CLIP).astype(np.float32), info


# ----------------------------------------------------------------------------------------------
# Loaders.
# ----------------------------------------------------------------------------------------------

REQUIRED_KEYS = ("observations", "actions", "rewards", "terminals")


def minari_root() -> str:
    """The local Minari datasets folder (MINARI_DATASETS_PATH, else ~/.minari/datasets)."""
    return os.environ.get("MINARI_DATASETS_PATH") or os.path.join(os.path.expanduser("~"), ".minari", "datasets")


def load_minari_dataset(dataset_id: str, download: bool = True):
    """The `minari.MinariDataset` for `dataset_id`: the local copy, else a download."""
    import minari  # heavy import; only Minari ids need it

    try:
        return minari.load_dataset(dataset_id, download=False)
    except FileNotFoundError:
        pass
    except Exception as e:  # malformed id or a broken local copy
        raise DatasetError(f"cannot load Minari dataset {dataset_id!r} from {minari_root()}: {e}") from e
    if not download:
        raise DatasetError(f"Minari dataset {dataset_id!r} is not in the local Minari root {minari_root()}")
    try:
        return minari.load_dataset(dataset_id, download=True)
    except Exception as e:
        raise DatasetError(
            f"Minari dataset {dataset_id!r} is not in the local Minari root {minari_root()} and "
            f"could not be downloaded ({type(e).__name__}: {e}). Check the id (`minari list "
            f"remote`), connect to the network, or set MINARI_DATASETS_PATH to a folder holding it."
        ) from e


def _box_bounds(space: gym.Space, what: str) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(space, gym.spaces.Box):
        raise DatasetError(f"{what}: IQL needs a continuous (Box) action space, got {space}")
    return space.low, space.high


def load_minari(dataset_id: str, reward_transform: str, download: bool = True) -> tuple[Dataset, DatasetInfo]:
    """Load a Minari dataset id; the evaluation env and reference scores come from its metadata."""
    mds = load_minari_dataset(dataset_id, download)
    obs_space = mds.observation_space
    columns = {k: [] for k in ("observations", "next_observations", "actions", "rewards", "terminals", "timeouts")}
    for episode in mds.iterate_episodes():
        try:
            episode_obs = evaluation.flatten_observations(obs_space, episode.observations)  # T + 1 rows
        except ValueError as e:
            raise DatasetError(f"{dataset_id}: {e}") from e
        steps = len(episode.actions)
        if steps == 0:
            raise DatasetError(f"{dataset_id}: episode {episode.id} is empty (no actions)")
        if len(episode_obs) != steps + 1:
            raise DatasetError(
                f"{dataset_id}: episode {episode.id} has {len(episode_obs)} observations for "
                f"{steps} actions (expected {steps + 1})"
            )
        terminals = np.asarray(episode.terminations, bool)
        ends = np.zeros(steps, bool)
        ends[-1] = not terminals[-1]  # the episode ends here without a terminal: a timeout
        columns["observations"].append(episode_obs[:-1])
        columns["next_observations"].append(episode_obs[1:])
        columns["actions"].append(np.asarray(episode.actions).reshape(steps, -1))
        columns["rewards"].append(np.asarray(episode.rewards))
        columns["terminals"].append(terminals)
        columns["timeouts"].append(ends)
    if not columns["actions"]:
        raise DatasetError(f"{dataset_id}: the dataset has no transitions")
    arrays = {k: np.concatenate(v) for k, v in columns.items()}
    dataset, info = from_arrays(
        **arrays,
        reward_transform=reward_transform,
        action_bounds=_box_bounds(mds.action_space, dataset_id),
        name=dataset_id,
        keep_timeouts=True,  # Minari stores the true last observation of a truncated episode
    )
    metadata = mds.storage.metadata
    env_id = recorded_env_id(metadata)
    if "gymnasium_robotics" in str(metadata.get("eval_env_spec") or metadata.get("env_spec")):
        evaluation.register_robotics(env_id)  # a maze, Kitchen or Adroit env: its ids must be known to gym.make

    def make_env(**kwargs) -> gym.Env:  # kwargs for gym.make, e.g. render_mode
        env = mds.recover_environment(eval_env=True, **kwargs)
        # The dataset's own env: its action bounds are the data's.
        return evaluation.acting_in_unit_box(evaluation.flat_observations(env))

    return dataset, dataclasses.replace(
        info,
        ref_min_score=metadata.get("ref_min_score"),
        ref_max_score=metadata.get("ref_max_score"),
        make_env=make_env,
        env_id=env_id,
        observation_space=obs_space,
    )


def recorded_env_id(metadata: dict) -> Optional[str]:
    """The id of a Minari dataset's evaluation env (else its recording env), from its metadata."""
    spec = metadata.get("eval_env_spec") or metadata.get("env_spec")
    try:
        return json.loads(spec)["id"] if isinstance(spec, str) else None
    except (ValueError, KeyError, TypeError):
        return None


def read_arrays(path: str) -> dict[str, np.ndarray]:
    """Top-level arrays of an hdf5 or npz file (no pickle: object arrays are refused)."""
    try:
        if path.endswith(".npz"):
            with np.load(path, allow_pickle=False) as f:
                return {k: f[k] for k in f.files}
        import h5py

        with h5py.File(path, "r") as f:
            return {k: f[k][()] for k in f.keys() if isinstance(f[k], h5py.Dataset)}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise DatasetError(f"cannot read {path}: {type(e).__name__}: {e}") from e


def load_file(path: str, reward_transform: str,
              action_bounds: tuple[Any, Any] = (-1.0, 1.0)) -> tuple[Dataset, DatasetInfo]:
    """Load a D4RL-format .hdf5/.h5 or .npz file with keys observations, actions, rewards,
    terminals, and optionally timeouts and next_observations. `action_bounds` are those of
    the env the data was recorded in (a file does not say)."""
    if not os.path.isfile(path):
        raise DatasetError(f"dataset file {path!r} does not exist")
    arrays = read_arrays(path)
    missing = [k for k in REQUIRED_KEYS if k not in arrays]
    if missing:
        raise DatasetError(f"{path}: missing key(s) {missing}; found {sorted(arrays)}")
    dataset, info = from_arrays(
        **{k: arrays[k] for k in REQUIRED_KEYS},
        timeouts=arrays.get("timeouts"),
        next_observations=arrays.get("next_observations"),
        reward_transform=reward_transform,
        action_bounds=action_bounds,
        name=os.path.basename(path),
    )
    family = os.path.basename(path).split("-")[0].lower()
    ref_min, ref_max = D4RL_REFERENCE_SCORES.get(family, (None, None))
    return dataset, dataclasses.replace(info, ref_min_score=ref_min, ref_max_score=ref_max)


def is_file_source(source: str) -> bool:
    return source.endswith((".hdf5", ".h5", ".npz"))


def load_dataset(source: str, reward_transform: str, download: bool = True,
                 file_action_bounds: tuple[Any, Any] = (-1.0, 1.0)) -> tuple[Dataset, DatasetInfo]:
    """A Minari id (e.g. 'mujoco/hopper/medium-v0') or a path to a .hdf5/.h5/.npz file (whose
    actions lie in `file_action_bounds`; a Minari dataset knows its own)."""
    if is_file_source(source):
        return load_file(source, reward_transform, file_action_bounds)
    return load_minari(source, reward_transform, download)
