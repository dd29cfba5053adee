"""datasets.py: datasets from behavior snapshots, their metadata, determinism, the shipped default."""

import os

import jax
import minari
import numpy as np
import pytest

import dataset as dataset_lib
from behavior import datasets
from evaluation import normalized_score

SHIPPED_HOPPER = os.path.join(datasets.SHIPPED, "hopper")


@pytest.fixture
def fresh_root(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    return tmp_path / "minari"


def test_random_and_policy_datasets_load_back(pendulum_behavior, fresh_root):
    workdir, _, _ = pendulum_behavior
    behavior = datasets.Behavior(str(workdir))
    ids = datasets.make_datasets("Pendulum-v1", behavior, ["random", "expert"], "t", steps=2000, seed=0,
                                ref_episodes=10, num_envs=4)
    assert ids == ["t/pendulum/random-v0", "t/pendulum/expert-v0"]
    assert set(ids) <= set(minari.list_local_datasets())

    data, info = dataset_lib.load_dataset("t/pendulum/random-v0", "none")
    assert data.size == 2000 and data.observations.shape == (2000, 3) and data.actions.shape == (2000, 1)
    assert info.ref_min_score < info.ref_max_score
    env = info.make_env()
    assert env.spec.id == "Pendulum-v1" and float(env.action_space.high[0]) == 1.0  # rescaled to [-1, 1]
    env.close()

    # The random dataset's own full episodes score about 0 on the normalised scale.
    mds = minari.load_dataset("t/pendulum/random-v0")
    full = [e.rewards.sum() for e in mds.iterate_episodes() if len(e.rewards) == 200]
    assert len(full) >= 8
    assert abs(float(normalized_score(np.mean(full), info.ref_min_score, info.ref_max_score))) < 15

    # The expert policy's episodes (the best snapshot, sampled stochastically) score far above.
    mds = minari.load_dataset("t/pendulum/expert-v0")
    expert = [e.rewards.sum() for e in mds.iterate_episodes() if len(e.rewards) == 200]
    assert normalized_score(np.mean(expert), info.ref_min_score, info.ref_max_score) > 60


def test_medium_replay_follows_the_training_history(pendulum_behavior):
    workdir, _, snapshots = pendulum_behavior
    behavior = datasets.Behavior(str(workdir))
    segments = behavior.segments("medium-replay", 10**6)
    # Warm-up (random) steps, then each snapshot before medium for the steps it trained over.
    assert segments[0][1] is None and segments[0][2] == 1000
    assert sum(n for _, _, n in segments) == behavior.medium["step"]
    assert [s for _, s, _ in segments[1:]] == [s["step"] for s in (behavior.replay or [behavior.medium])]
    worst, best = min(s["return"] for s in snapshots), max(s["return"] for s in snapshots)
    target = worst + (best - worst) / 3
    assert all(abs(behavior.medium["return"] - target) <= abs(s["return"] - target) for s in snapshots)


def test_bad_behavior_folder_and_kind(tmp_path, pendulum_behavior):
    with pytest.raises(dataset_lib.DatasetError, match="not a behavior folder"):
        datasets.Behavior(str(tmp_path))
    behavior = datasets.Behavior(str(pendulum_behavior[0]))
    with pytest.raises(dataset_lib.DatasetError, match="unknown dataset kind"):
        datasets.make_datasets("Pendulum-v1", behavior, ["mediocre"], "t", 100, 0, 2)
    with pytest.raises(dataset_lib.DatasetError, match="not Hopper-v5"):
        datasets.make_datasets("Hopper-v5", behavior, ["random"], "t", 100, 0, 2)


def arrays_of(ds_id):
    data, _ = dataset_lib.load_dataset(ds_id, "none")
    return [np.asarray(x) for x in jax.tree.leaves(data)]


def test_shipped_policy_rebuilds_identical_arrays(tmp_path, monkeypatch):
    behavior = datasets.Behavior(SHIPPED_HOPPER)
    built = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / name))
        datasets.make_datasets("Hopper-v5", behavior, ["medium"], "local", steps=1500, seed=seed,
                              ref_episodes=4, num_envs=4)
        built[name] = arrays_of("local/hopper/medium-v0")
    assert all(np.array_equal(x, y) for x, y in zip(built["a"], built["b"]))
    assert not all(np.array_equal(x, y) for x, y in zip(built["a"], built["c"]))


def test_default_local_dataset_is_built_once(fresh_root):
    assert datasets.ensure_dataset("local/hopper/medium-v0", steps=1000, ref_episodes=2) is True
    assert "local/hopper/medium-v0" in minari.list_local_datasets()
    assert datasets.ensure_dataset("local/hopper/medium-v0", steps=1000) is False  # already there
    assert datasets.ensure_dataset("mujoco/hopper/medium-v0") is False  # not a local id
    assert datasets.ensure_dataset("local/nothing/medium-v0") is False  # no shipped policies
    data, info = dataset_lib.load_dataset("local/hopper/medium-v0", "locomotion")
    assert data.size == 1000 and info.ref_max_score > info.ref_min_score


def test_selection_on_a_locomotion_like_history(tmp_path):
    import json

    # Warm-up 10k random steps, a snapshot every 10k steps, returns rising to 3000.
    returns = [15, 250, 600, 950, 1100, 2000, 3000, 2900]
    (tmp_path / "behavior.json").write_text(json.dumps(
        {"env": "Hopper-v5", "hidden_dims": [8], "obs_dim": 11, "action_dim": 3, "start_steps": 10000}))
    (tmp_path / "snapshots.json").write_text(json.dumps(
        [{"step": 10000 * (i + 1), "return": r} for i, r in enumerate(returns)]))
    behavior = datasets.Behavior(str(tmp_path))
    assert behavior.expert["step"] == 70000
    assert behavior.medium["step"] == 40000  # 950 is closest to 15 + (3000 - 15) / 3 = 1010
    segments = behavior.segments("medium-replay", 10**6)
    assert segments == [("warm-up", None, 10000), ("step 10000", 10000, 10000),
                        ("step 20000", 20000, 10000), ("step 30000", 30000, 10000)]
    assert behavior.segments("medium-expert", 500) == [("medium", 40000, 500), ("expert", 70000, 500)]
