"""D4RL-style Minari datasets for a Gymnasium env, made from SAC behavior snapshots, offline.

Datasets, recorded with `minari.DataCollector` under `<namespace>/<env>/<kind>-v0`:
  random         uniformly random actions in [-1, 1]
  medium         the snapshot whose evaluation return is closest to 1/3 of the best, as D4RL
                 (counted from the worst snapshot's return, for envs with negative returns)
  medium-replay  the agent's training history until it reached medium: random actions for
                 the warm-up steps, then at each step the latest snapshot taken by then
                 (D4RL stored the raw replay buffer; replaying the snapshots lets the small
                 shipped files rebuild it)
  expert         the best snapshot
  medium-expert  medium's steps followed by expert's steps
Behavior actions are sampled from the stochastic policy, as D4RL. Every random draw (actions,
episode resets) derives from the seed, so the same seed rebuilds identical arrays. The metadata
holds the evaluation env and `ref_min_score` / `ref_max_score`: the mean returns of the random
and the expert policy, so the normalised score works.

A behavior folder (a `train_behavior.py` work directory, or a shipped one in `policies/`) holds
`behavior.json` (env, network sizes, warm-up steps), `snapshots.json` ([{step, return}]) and
`snapshots/step_XXXXXXX.msgpack` (actor parameters).

`ensure_dataset` builds a missing `local/<env>/<kind>-v0` from the shipped policies; the
command line is `python -m tools.collect`.
"""

import json
import os
import shutil

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

import dataset as dataset_lib
from dataset import DatasetError
import evaluation
from behavior import ids
from behavior.sac import TanhGaussianActor, policy_actions

KINDS = ("random", "medium", "medium-replay", "expert", "medium-expert")
SHIPPED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "policies")


def env_family(env_id: str) -> str:
    """'Hopper-v5' -> 'hopper', the middle part of a dataset id."""
    return env_id.split("/")[-1].split("-v")[0].lower()


def dataset_id(namespace: str, env_id: str, kind: str) -> str:
    return ids.make(env_family(env_id), kind, namespace)


def shipped_dir(env_id: str) -> str:
    return os.path.join(SHIPPED, env_family(env_id))


class Behavior:
    """The snapshots of one behavior run, and which of them D4RL's recipe picks."""

    def __init__(self, path: str):
        self.path = path
        try:
            with open(os.path.join(path, "behavior.json")) as f:
                self.meta = json.load(f)
            with open(os.path.join(path, "snapshots.json")) as f:
                self.snapshots = sorted(json.load(f), key=lambda s: s["step"])
        except (OSError, ValueError) as e:
            raise DatasetError(f"{path} is not a behavior folder (behavior.json, snapshots.json): {e}") from e
        if not self.snapshots:
            raise DatasetError(f"{path} has no snapshots yet")
        returns = [s["return"] for s in self.snapshots]
        self.expert = max(self.snapshots, key=lambda s: s["return"])
        # D4RL's medium reaches about a third of the best return. Measured from the worst
        # snapshot (the untrained policy) up, so that envs with negative returns work too;
        # for locomotion, where the untrained return is near 0, it is the same rule.
        target = min(returns) + (max(returns) - min(returns)) / 3
        self.medium = min(self.snapshots, key=lambda s: (abs(s["return"] - target), s["step"]))
        self.replay = [s for s in self.snapshots if s["step"] < self.medium["step"]]

    def params(self, step: int):
        actor = TanhGaussianActor(tuple(self.meta["hidden_dims"]), self.meta["action_dim"])
        template = actor.init(jax.random.key(0), jnp.zeros((1, self.meta["obs_dim"])))["params"]
        path = os.path.join(self.path, "snapshots", f"step_{step:07d}.msgpack")
        try:
            with open(path, "rb") as f:  # the actor's parameters, as train_behavior.py saved them
                return flax.serialization.from_bytes(template, f.read())
        except OSError as e:
            raise DatasetError(f"missing snapshot file {path}") from e

    def segments(self, kind: str, steps: int) -> list[tuple[str, int | None, int]]:
        """(label, snapshot step or None for random, env steps) for each part of a dataset."""
        if kind == "random":
            return [("random", None, steps)]
        if kind == "medium":
            return [("medium", self.medium["step"], steps)]
        if kind == "expert":
            return [("expert", self.expert["step"], steps)]
        if kind == "medium-expert":
            return [("medium", self.medium["step"], steps), ("expert", self.expert["step"], steps)]
        if kind == "medium-replay":
            # Steps [0, medium) of training: random during the warm-up, then at each step the
            # latest snapshot taken by then (the first one before any was taken).
            end_step = self.medium["step"]
            begin = min(int(self.meta["start_steps"]), end_step)
            parts = [("warm-up", None, begin)]
            replay = self.replay or [self.medium]
            ends = [s["step"] for s in replay[1:]] + [end_step]
            for snap, end in zip(replay, ends):
                if end > begin:
                    parts.append((f"step {snap['step']}", snap["step"], end - begin))
                    begin = end
            return [p for p in parts if p[2] > 0]
        raise DatasetError(f"unknown dataset kind {kind!r}; choose from {KINDS}")

    def export(self, target: str, step: int | None = None) -> None:
        """Copy behavior.json, snapshots.json and only the snapshot files collect uses (or only
        snapshot `step`, which then is the expert: the shipped goal-reaching Ant)."""
        if step is not None and step not in {s["step"] for s in self.snapshots}:
            raise DatasetError(f"{self.path} has no snapshot at step {step}")
        needed = {step} if step is not None else {self.medium["step"], self.expert["step"],
                                                  *(s["step"] for s in self.replay)}
        os.makedirs(os.path.join(target, "snapshots"), exist_ok=True)
        for step in sorted(needed):
            name = f"step_{step:07d}.msgpack"
            shutil.copyfile(os.path.join(self.path, "snapshots", name), os.path.join(target, "snapshots", name))
        with open(os.path.join(target, "behavior.json"), "w") as f:
            json.dump(self.meta, f, indent=2)
        with open(os.path.join(target, "snapshots.json"), "w") as f:
            json.dump([s for s in self.snapshots if s["step"] in needed], f, indent=2)


def make_room(ds_id: str, overwrite: bool) -> bool:
    """Whether to record `ds_id`: True when it is not in the local Minari root, or it is and
    `overwrite` deletes it; False (keeping it, and saying so) otherwise."""
    import minari  # heavy: imported when a dataset is made

    if ds_id not in minari.list_local_datasets():
        return True
    if not overwrite:
        print(f"{ds_id} already exists in {dataset_lib.minari_root()}; keeping it (--overwrite replaces it)")
        return False
    minari.delete_dataset(ds_id)
    return True


def make_policy(behavior: Behavior, step: int | None, action_dim: int, deterministic: bool = False):
    """A jitted (observations, key) -> actions in [-1, 1]; `step` None is the random policy."""
    if step is None:
        return jax.jit(lambda obs, key: jax.random.uniform(key, obs.shape[:-1] + (action_dim,), minval=-1.0, maxval=1.0))
    params = behavior.params(step)
    apply_fn = TanhGaussianActor(tuple(behavior.meta["hidden_dims"]), action_dim).apply
    return jax.jit(lambda obs, key: policy_actions(apply_fn, params, obs, key, deterministic))


def mean_return(env_id: str, policy, key, episodes: int) -> float:
    """Mean return of `policy` (stochastic) over `episodes` vectorized episodes."""
    counter = iter(range(2**31))
    act = lambda obs: policy(obs, jax.random.fold_in(key, next(counter)))  # noqa: E731
    seed = int(jax.random.randint(jax.random.fold_in(key, 2**31), (), 0, 2**30))
    return evaluation.evaluate(act, lambda: evaluation.make_env(env_id), episodes, seed)["return"]


def record(collectors, segments, policies: dict, key, bar_desc: str) -> None:
    """Step the DataCollector-wrapped envs in lockstep through the segments, one batched
    policy call per step for all of them (the order is fixed by their number and `key`, so
    the same arguments record the same episodes)."""
    num_envs = len(collectors)
    env_key, act_key = jax.random.split(key)
    episodes = 0

    def reset(collector):
        nonlocal episodes
        seed = int(jax.random.randint(jax.random.fold_in(env_key, episodes), (), 0, 2**31 - 1))
        episodes += 1
        return np.asarray(collector.reset(seed=seed)[0], np.float32)

    obs = np.stack([reset(c) for c in collectors])
    total = sum(n for _, _, n in segments)
    call = 0
    with tqdm(total=total, unit="step", desc=bar_desc, dynamic_ncols=True, mininterval=1.0) as bar:
        for _, snapshot, n in segments:
            policy = policies[snapshot]
            remaining = n
            while remaining > 0:
                active = min(num_envs, remaining)  # the last call of a segment may use fewer envs
                actions = np.asarray(policy(obs, jax.random.fold_in(act_key, call)))
                call += 1
                for j in range(active):
                    next_obs, _, terminated, truncated, _ = collectors[j].step(actions[j])
                    obs[j] = reset(collectors[j]) if terminated or truncated else next_obs
                remaining -= active
                bar.update(active)


def make_datasets(env_id: str, behavior: Behavior, kinds, namespace: str, steps: int, seed: int,
                  ref_episodes: int, overwrite: bool = False, num_envs: int = 16) -> list[str]:
    """Record the datasets `kinds` into the local Minari root; returns their ids."""
    import minari  # heavy: imported when a dataset is made

    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise DatasetError(f"unknown dataset kind(s) {unknown}; choose from {KINDS}")
    if behavior.meta["env"] != env_id:
        raise DatasetError(f"{behavior.path} holds policies for {behavior.meta['env']}, not {env_id}")
    env = evaluation.make_env(env_id)
    action_dim = int(env.action_space.shape[0])
    env.close()

    key = jax.random.key(seed)
    ref_key, data_key = jax.random.split(key)
    policies = {None: make_policy(behavior, None, action_dim)}
    for kind in kinds:
        for _, snapshot, _ in behavior.segments(kind, steps):
            if snapshot not in policies:
                policies[snapshot] = make_policy(behavior, snapshot, action_dim)
    expert_policy = policies.get(behavior.expert["step"]) or make_policy(behavior, behavior.expert["step"], action_dim)
    ref_min = mean_return(env_id, policies[None], jax.random.fold_in(ref_key, 0), ref_episodes)
    ref_max = mean_return(env_id, expert_policy, jax.random.fold_in(ref_key, 1), ref_episodes)
    print(f"{env_id}: reference returns random {ref_min:.1f}, expert {ref_max:.1f} "
          f"(medium = snapshot {behavior.medium['step']}, expert = snapshot {behavior.expert['step']})")

    made = []
    for kind in kinds:
        ds_id = dataset_id(namespace, env_id, kind)
        if not make_room(ds_id, overwrite):
            made.append(ds_id)
            continue
        segments = behavior.segments(kind, steps)
        collectors = [minari.DataCollector(evaluation.make_env(env_id)) for _ in range(num_envs)]
        try:
            record(collectors, segments, policies, jax.random.fold_in(data_key, KINDS.index(kind)), ds_id)
            save_collected(collectors, ds_id, env_id, kind, segments, ref_min, ref_max)
        finally:
            for collector in collectors:  # removes their temporary storage in the Minari root
                collector.close()
        made.append(ds_id)
    return made


def save_collected(collectors, ds_id, env_id, kind, segments, ref_min, ref_max) -> None:
    """Write the collectors' episodes as one Minari dataset with D4RL-style metadata."""
    dataset = collectors[0].create_dataset(
        dataset_id=ds_id,
        eval_env=evaluation.make_env(env_id).spec,  # with RescaleAction when one was needed
        algorithm_name=f"SAC behavior policy ({kind}), tools/collect.py",
        author="iql-jax tools/collect.py",
        author_email="none",
        code_permalink="tools/collect.py",
        description=f"D4RL-style {kind} dataset for {env_id}: "
                    + "; ".join(f"{label} x {n} steps" for label, _, n in segments),
        ref_min_score=ref_min,
        ref_max_score=ref_max,
    )
    for collector in collectors[1:]:
        collector.add_to_dataset(dataset)


def shipped_env_for(family: str) -> str | None:
    """The env id of the shipped behavior policies for a dataset-id family, if any."""
    path = os.path.join(SHIPPED, family, "behavior.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)["env"]


def ensure_dataset(ds_id: str, steps: int = 1_000_000, seed: int = 0, ref_episodes: int = 50) -> bool:
    """Build `local/<env>/<kind>-v0` from the shipped policies if it is not there yet.

    `ref_episodes` episodes of each reference policy give ref_min_score / ref_max_score.
    Returns True when it built the dataset; False when the id is not such a local id, has no
    shipped policies, or is already in the local Minari root.
    """
    import minari  # heavy: imported when a dataset is made

    parsed = ids.parse(ds_id)
    if parsed is None:
        return False
    family, kind, _ = parsed
    env_id = shipped_env_for(family)
    if env_id is None or kind not in KINDS or dataset_id("local", env_id, kind) != ds_id:
        return False
    if ds_id in minari.list_local_datasets():
        return False
    print(f"{ds_id} is not in the local Minari root {dataset_lib.minari_root()}; building it from the "
          f"shipped {env_id} policies ({steps:,} steps per policy, a few minutes on a laptop CPU)")
    make_datasets(env_id, Behavior(shipped_dir(env_id)), [kind], "local", steps, seed, ref_episodes=ref_episodes)
    return True

