"""Loaders: Minari ids, hdf5 and npz files; T+1 handling, masks, dones, reward scaling, errors."""

import chex
import h5py
import jax
import minari
import numpy as np
import pytest
from conftest import HOPPER_REF

import dataset as dataset_lib
from dataset import DatasetError


def test_minari_loader_shapes_masks_dones(minari_root):
    data, info = dataset_lib.load_dataset("test/hopper/random-v0", "none")
    mds = minari.load_dataset("test/hopper/random-v0")
    episodes = list(mds.iterate_episodes())
    n = sum(len(e.actions) for e in episodes)
    assert data.size == n == 600
    assert data.observations.shape == data.next_observations.shape == (n, 11)
    assert data.actions.shape == (n, 3)
    assert info.num_episodes == len(episodes)
    assert (info.ref_min_score, info.ref_max_score) == HOPPER_REF

    obs, next_obs = np.asarray(data.observations), np.asarray(data.next_observations)
    masks, dones = np.asarray(data.masks), np.asarray(data.dones)
    start = 0
    terminated = truncated = 0
    for e in episodes:
        t = len(e.actions)
        rows = slice(start, start + t)
        # T + 1 observations: obs are the first T, next_obs the last T.
        np.testing.assert_allclose(obs[rows], e.observations[:-1], rtol=1e-6)
        np.testing.assert_allclose(next_obs[rows], e.observations[1:], rtol=1e-6)
        np.testing.assert_allclose(data.rewards[rows], e.rewards, rtol=1e-6)
        np.testing.assert_array_equal(masks[rows], 1.0 - e.terminations)
        expected_dones = np.zeros(t)
        expected_dones[-1] = 1.0
        np.testing.assert_array_equal(dones[rows], expected_dones)
        terminated += bool(e.terminations[-1])
        truncated += bool(e.truncations[-1])
        start += t
    # The fixture's 20-step limit gives both kinds of episode end; truncations keep mask 1.
    assert terminated > 0 and truncated > 0
    assert masks.sum() == n - terminated
    env = info.make_env()
    assert env.spec.id == "Hopper-v5"
    env.close()


def test_minari_actions_are_clipped(minari_root):
    data, _ = dataset_lib.load_dataset("test/hopper/random-v0", "none")
    assert float(np.abs(data.actions).max()) <= 1 - 1e-5


def toy_arrays():
    """Two episodes of a 1-D walk: a terminal one (3 steps, return 3) then a timeout (4 steps,
    return 7); observations count up so every transition can be checked by hand."""
    obs = np.arange(7, dtype=np.float32)[:, None]
    return {
        "observations": obs,
        "actions": np.linspace(-1, 1, 7, dtype=np.float32)[:, None],
        "rewards": np.array([1, 1, 1, 1, 2, 2, 2], np.float32),
        "terminals": np.array([0, 0, 1, 0, 0, 0, 0], np.float32),
        "timeouts": np.array([0, 0, 0, 0, 0, 0, 1], np.float32),
    }


def test_flat_arrays_without_next_observations_drop_unknown_successors():
    data, info = dataset_lib.from_arrays(**toy_arrays())
    # The timeout row (its successor is unknown) is dropped; the terminal row is kept.
    assert data.size == 6
    np.testing.assert_array_equal(data.observations[:, 0], [0, 1, 2, 3, 4, 5])
    np.testing.assert_array_equal(data.next_observations[:, 0], [1, 2, 3, 4, 5, 6])
    np.testing.assert_array_equal(data.masks, [1, 1, 0, 1, 1, 1])
    np.testing.assert_array_equal(data.dones, [0, 0, 1, 0, 0, 1])
    np.testing.assert_allclose(data.actions[[0, -1], 0], [-(1 - 1e-5), 2 / 3], rtol=1e-6)
    assert info.num_episodes == 2


def test_locomotion_reward_scaling_hand_value():
    arrays = toy_arrays()
    arrays["next_observations"] = arrays["observations"] + 1
    data, info = dataset_lib.from_arrays(**arrays, reward_transform="locomotion", keep_timeouts=True)
    # Episodes return 3 and 1 + 2 + 2 + 2 = 7 -> scale 1000 / (7 - 3) = 250.
    assert info.reward_scale == pytest.approx(250.0) and info.reward_shift == 0.0
    np.testing.assert_allclose(data.rewards, arrays["rewards"] * 250.0)
    np.testing.assert_array_equal(data.dones, [0, 0, 1, 0, 0, 0, 1])


def test_timeout_rows_are_dropped_as_qlearning_dataset_even_with_next_observations():
    arrays = toy_arrays()
    arrays["timeouts"] = np.array([0, 0, 0, 0, 1, 0, 0], np.float32)  # a time limit after row 4
    arrays["next_observations"] = arrays["observations"] + 1
    data, info = dataset_lib.from_arrays(**arrays)
    # Row 4 goes; row 3's episode ends there (its successor, row 5, does not continue it).
    np.testing.assert_array_equal(data.observations[:, 0], [0, 1, 2, 3, 5, 6])
    np.testing.assert_array_equal(data.dones, [0, 0, 1, 1, 0, 1])
    np.testing.assert_array_equal(data.masks, [1, 1, 0, 1, 1, 1])
    assert info.dropped_timeout_rows == 1 and info.num_episodes == 3
    kept, kept_info = dataset_lib.from_arrays(**arrays, keep_timeouts=True)  # Minari: true last observations
    assert kept.size == 7 and kept_info.dropped_timeout_rows == 0


def test_actions_are_mapped_from_the_env_bounds_onto_the_unit_box():
    arrays = toy_arrays()
    arrays["actions"] = np.array([-3, -1.5, 0, 1.5, 3, 2, -2], np.float32)[:, None]
    data, info = dataset_lib.from_arrays(**arrays, action_bounds=(-3.0, 3.0))
    np.testing.assert_allclose(data.actions[:, 0], [-(1 - 1e-5), -0.5, 0, 0.5, 1 - 1e-5, 2 / 3], rtol=1e-6)
    assert info.actions_rescaled and info.action_low == (-3.0,) and info.action_high == (3.0,)
    assert info.clipped_action_rows == 0
    # Per dimension, with asymmetric bounds: [0, 10] -> [-1, 1].
    scaled, info = dataset_lib.scale_actions(np.array([[0.0, -0.4], [5.0, 0.4], [10.0, 0.0]]), ([0, -0.4], [10, 0.4]))
    np.testing.assert_allclose(scaled, [[-(1 - 1e-5), -(1 - 1e-5)], [0, 1 - 1e-5], [1 - 1e-5, 0]], atol=1e-6)


def test_slightly_outside_actions_are_clipped_and_counted_gross_ones_refused():
    actions = np.array([[0.5, 1.04], [-1.02, 0.0], [0.0, 0.0]], np.float32)  # two rows outside [-1, 1]
    scaled, info = dataset_lib.scale_actions(actions, (-1.0, 1.0))
    assert info["clipped_action_rows"] == 2 and info["max_action_violation"] == pytest.approx(0.04, abs=1e-6)
    assert not info["actions_rescaled"] and float(np.abs(scaled).max()) == pytest.approx(1 - 1e-5)
    # More than 10% of the range (0.2 here) outside is refused, with the count of such rows.
    with pytest.raises(DatasetError, match="2 action row\\(s\\) lie outside the action bounds by more than 10%"):
        dataset_lib.scale_actions(np.array([[1.3, 0.0], [0.0, -1.25], [1.1, 0.0]]), (-1.0, 1.0))
    with pytest.raises(DatasetError, match="finite bounds"):
        dataset_lib.scale_actions(actions, (-np.inf, np.inf))


def test_antmaze_and_none_reward_transforms():
    arrays = toy_arrays()
    antmaze, _ = dataset_lib.from_arrays(**arrays, reward_transform="antmaze")
    plain, _ = dataset_lib.from_arrays(**arrays, reward_transform="none")
    np.testing.assert_allclose(antmaze.rewards, plain.rewards - 1.0)
    np.testing.assert_allclose(plain.rewards, arrays["rewards"][:6])


def test_next_observation_jumps_end_episodes():
    arrays = toy_arrays()
    arrays["next_observations"] = arrays["observations"] + 1
    arrays["next_observations"][4] = 99.0  # does not continue into observations[5]
    del arrays["timeouts"]
    data, _ = dataset_lib.from_arrays(**arrays)
    np.testing.assert_array_equal(data.dones, [0, 0, 1, 0, 1, 0, 1])


def write_file(path, arrays):
    if str(path).endswith(".npz"):
        np.savez(path, **arrays)
    else:
        with h5py.File(path, "w") as f:
            for k, v in arrays.items():
                f.create_dataset(k, data=v)
            f.create_group("metadata")  # D4RL files carry groups too; they are ignored


@pytest.mark.parametrize("suffix", [".hdf5", ".npz"])
def test_file_loaders_match_from_arrays(tmp_path, suffix):
    arrays = toy_arrays()
    path = tmp_path / f"hopper-toy{suffix}"
    write_file(path, arrays)
    data, info = dataset_lib.load_dataset(str(path), "locomotion")
    expected, _ = dataset_lib.from_arrays(**arrays, reward_transform="locomotion")
    chex.assert_trees_all_equal(data, expected)
    # A file named after a D4RL env family gets D4RL's reference returns.
    assert (info.ref_min_score, info.ref_max_score) == dataset_lib.D4RL_REFERENCE_SCORES["hopper"]


def test_sample_is_deterministic_and_in_range():
    data, _ = dataset_lib.from_arrays(**toy_arrays())
    a = data.sample(jax.random.key(3), 50)
    b = data.sample(jax.random.key(3), 50)
    np.testing.assert_array_equal(a.observations, b.observations)
    assert a.observations.shape == (50, 1)
    # Rows stay aligned: every sampled next observation is observation + 1.
    np.testing.assert_array_equal(a.next_observations, a.observations + 1)


def bad(**changes):
    arrays = toy_arrays()
    arrays.update(changes)
    return {k: v for k, v in arrays.items() if v is not None}


@pytest.mark.parametrize(
    "arrays,message",
    [
        (bad(rewards=np.ones(5)), "different lengths"),
        (bad(observations=np.full((7, 1), np.nan)), "'observations' has 7 NaN/inf"),
        (bad(rewards=np.array([1, 1, np.inf, 1, 1, 1, 1.0])), "'rewards' has 1 NaN/inf value\\(s\\), the first at row 2"),
        (bad(actions=np.full((7, 1), 1.5)), "7 action row\\(s\\) lie outside the action bounds"),
        (bad(actions=np.array([["a"]] * 7)), "'actions' must be a numeric array"),
        (bad(observations=np.zeros(7)), "'observations' must have 2 dimension"),
        ({k: v[:0] for k, v in toy_arrays().items()}, "empty"),
    ],
)
def test_malformed_arrays_get_clear_errors(arrays, message):
    with pytest.raises(DatasetError, match=message):
        dataset_lib.from_arrays(**arrays)


def test_file_errors(tmp_path):
    arrays = toy_arrays()
    del arrays["terminals"]
    write_file(tmp_path / "x.npz", arrays)
    with pytest.raises(DatasetError, match=r"missing key\(s\) \['terminals'\]"):
        dataset_lib.load_dataset(str(tmp_path / "x.npz"), "none")
    with pytest.raises(DatasetError, match="does not exist"):
        dataset_lib.load_dataset(str(tmp_path / "nothing.hdf5"), "none")
    (tmp_path / "junk.hdf5").write_bytes(b"not an hdf5 file")
    with pytest.raises(DatasetError, match="cannot read"):
        dataset_lib.load_dataset(str(tmp_path / "junk.hdf5"), "none")
    np.savez(tmp_path / "obj.npz", observations=np.array([{"a": 1}], dtype=object))
    with pytest.raises(DatasetError, match="cannot read"):  # object arrays would need pickle
        dataset_lib.load_dataset(str(tmp_path / "obj.npz"), "none")


def test_single_return_cannot_be_locomotion_scaled():
    arrays = toy_arrays()
    arrays["rewards"] = np.array([1, 1, 2, 1, 1, 1, 1], np.float32)  # both episodes return 4
    arrays["next_observations"] = arrays["observations"] + 1
    with pytest.raises(DatasetError, match="reward_transform='none'"):
        dataset_lib.from_arrays(**arrays, reward_transform="locomotion", keep_timeouts=True)


def test_unknown_minari_id_names_id_and_root(minari_root):
    with pytest.raises(DatasetError) as e:
        dataset_lib.load_dataset("nobody/hopper/nothing-v0", "none")
    assert "nobody/hopper/nothing-v0" in str(e.value) and str(minari_root) in str(e.value)


def test_minari_episode_problems_are_named(monkeypatch):
    import types

    import gymnasium as gym

    space = gym.spaces.Box(-1, 1, (2,))

    def fake(episodes):
        return types.SimpleNamespace(observation_space=space, action_space=gym.spaces.Box(-1, 1, (1,)),
                                     iterate_episodes=lambda: iter(episodes), storage=types.SimpleNamespace(metadata={}))

    def episode(i, steps, observations=None):
        return types.SimpleNamespace(id=i, observations=np.zeros((steps + 1 if observations is None else observations, 2)),
                                     actions=np.zeros((steps, 1)), rewards=np.zeros(steps),
                                     terminations=np.zeros(steps, bool), truncations=np.zeros(steps, bool))

    monkeypatch.setattr(dataset_lib, "load_minari_dataset", lambda *a: fake([episode(0, 3), episode(1, 0)]))
    with pytest.raises(DatasetError, match="episode 1 is empty"):
        dataset_lib.load_dataset("x/y/z-v0", "none")
    monkeypatch.setattr(dataset_lib, "load_minari_dataset", lambda *a: fake([episode(0, 3, observations=3)]))
    with pytest.raises(DatasetError, match="episode 0 has 3 observations for 3 actions"):
        dataset_lib.load_dataset("x/y/z-v0", "none")
