"""Random malformed arrays thrown at the loaders find no crash but the project's own error."""

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import dataset as dataset_lib
from dataset import DatasetError

KEYS = ("observations", "actions", "rewards", "terminals", "timeouts", "next_observations")
dtypes = st.sampled_from([np.float32, np.float64, np.int32, np.bool_, np.uint8])
shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5)
arrays = st.one_of(
    hnp.arrays(dtypes, shapes, elements=None),
    hnp.arrays(np.float64, shapes, elements=st.floats(allow_nan=True, allow_infinity=True, width=32)),
    st.just(np.array(["a", "b"])),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(KEYS), arrays, min_size=4), st.sampled_from(dataset_lib.REWARD_TRANSFORMS))
def test_from_arrays_accepts_or_raises_a_dataset_error(columns, transform):
    columns.setdefault("observations", np.zeros((3, 2)))
    columns.setdefault("actions", np.zeros((3, 1)))
    columns.setdefault("rewards", np.zeros(3))
    columns.setdefault("terminals", np.zeros(3))
    try:
        data, info = dataset_lib.from_arrays(**columns, reward_transform=transform)
    except DatasetError as e:
        # The message names the column or the property at fault.
        assert any(word in str(e) for word in (*KEYS, "transition", "episode", "reward_transform")), str(e)
        return
    # Accepted: then it is a consistent, finite dataset.
    n = data.size
    assert n > 0 and all(x.shape[0] == n for x in (data.observations, data.actions, data.rewards, data.masks))
    assert all(np.isfinite(np.asarray(x)).all() for x in (data.observations, data.actions, data.rewards))
    assert float(np.abs(np.asarray(data.actions)).max(initial=0)) <= 1.0
    assert info.num_episodes >= 1


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=0, max_size=200))
def test_garbage_files_give_a_dataset_error(tmp_path_factory, payload):
    for suffix in (".npz", ".hdf5"):
        path = tmp_path_factory.mktemp("junk") / f"junk{suffix}"
        path.write_bytes(payload)
        try:
            dataset_lib.load_dataset(str(path), "none")
        except DatasetError:
            continue
        raise AssertionError(f"{payload!r} loaded as a dataset")
