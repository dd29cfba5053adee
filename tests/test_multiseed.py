"""Many seeds per process: vmap over stacked agents, sharding over devices, batched evaluation."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dataset as dataset_lib
import evaluation
from harness import multiseed
from learner import IQLLearner

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    n = 128
    return dataset_lib.from_arrays(
        observations=rng.standard_normal((n, 3)), actions=rng.uniform(-1, 1, (n, 2)),
        rewards=rng.standard_normal(n), terminals=rng.random(n) < 0.1,
        next_observations=rng.standard_normal((n, 3)))[0]


def close(a, b, atol=1e-5):
    return all(np.allclose(x, y, atol=atol) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_seed_streams_are_pairwise_different_and_reproducible():
    keys = {(seed, name): np.asarray(jax.random.key_data(key)) for seed in (0, 1)
            for name, key in multiseed.seed_streams(seed).items()}
    assert sorted({name for _, name in keys}) == sorted(multiseed.STREAMS)
    values = [tuple(v.ravel()) for v in keys.values()]
    assert len(set(values)) == len(values)  # every stream of every seed differs
    # The streams' per-step keys (each folded with the same step) differ too.
    folded = {tuple(np.asarray(jax.random.key_data(jax.random.fold_in(k, 7))).ravel())
              for k in multiseed.seed_streams(0).values()}
    assert len(folded) == len(multiseed.STREAMS)
    # The collision the one-scheme rule avoids: split(k)[1] is fold_in(k, 1) in JAX.
    k = jax.random.key(0)
    assert np.array_equal(jax.random.key_data(jax.random.split(k)[1]), jax.random.key_data(jax.random.fold_in(k, 1)))
    again = multiseed.seed_streams(1)
    for name, key in again.items():
        np.testing.assert_array_equal(jax.random.key_data(key), keys[1, name])


def test_vmapped_seeds_equal_seeds_trained_alone_and_differ(data, tiny_config):
    seeds = [4, 5, 6]
    create = lambda key: IQLLearner.create(key, data.observations[0], data.actions[0], IQLLearner.fields(tiny_config))  # noqa: E731
    mesh = multiseed.make_mesh(len(seeds))
    agents, metrics = multiseed.update_n(multiseed.create_agents(create, seeds, mesh), data, 20, 16)
    assert metrics["critic_loss"].shape == (3,)
    for i, seed in enumerate(seeds):
        alone, alone_metrics = create(multiseed.seed_streams(seed)["agent"]).update_n(data, 20, 16)
        assert close(multiseed.unstack(agents, i).actor.params, alone.actor.params)
        assert close(multiseed.unstack(agents, i).critic.params, alone.critic.params)
        np.testing.assert_allclose(metrics["critic_loss"][i], alone_metrics["critic_loss"], rtol=1e-4)
    # Different seeds: different initialisations and batches.
    first, second = multiseed.unstack(agents, 0), multiseed.unstack(agents, 1)
    assert not close(first.actor.params, second.actor.params, atol=1e-3)
    assert not np.isclose(metrics["critic_loss"][0], metrics["critic_loss"][1])


def test_multiseed_update_does_not_recompile(data, tiny_config):
    create = lambda key: IQLLearner.create(key, data.observations[0], data.actions[0], IQLLearner.fields(tiny_config))  # noqa: E731
    mesh = multiseed.make_mesh(2)
    agents = multiseed.create_agents(create, [0, 1], mesh)
    compiled = multiseed.compiled_update_n(mesh, 3, 11)  # shapes no other test uses
    assert compiled._cache_size() == 0
    for _ in range(4):
        agents, _ = multiseed.update_n(agents, data, 3, 11)
    assert compiled._cache_size() == 1


def test_make_mesh_errors():
    with pytest.raises(ValueError, match="device"):
        multiseed.make_mesh(4, num_devices=len(jax.devices()) + 1)


SHARDED_SCRIPT = r"""
import chex, jax, numpy as np
import dataset as dataset_lib
from harness import multiseed
from learner import IQLLearner
from configs import iql_mujoco
assert len(jax.devices()) == 8, jax.devices()
try:
    multiseed.make_mesh(12, num_devices=8)
    raise SystemExit("no error for 12 seeds on 8 devices")
except ValueError as e:
    assert "not a multiple" in str(e)
assert multiseed.make_mesh(12).devices.size == 6  # the most devices that divide 12
config = iql_mujoco.get_config("smoke"); config.hidden_dims = (16, 16)
rng = np.random.default_rng(0); n = 128
data, _ = dataset_lib.from_arrays(rng.standard_normal((n, 3)), rng.uniform(-1, 1, (n, 2)), rng.standard_normal(n),
                                  rng.random(n) < 0.1, next_observations=rng.standard_normal((n, 3)))
create = lambda key: IQLLearner.create(key, data.observations[0], data.actions[0], IQLLearner.fields(config))
results = {}
for devices in (1, 4, 8):  # 8, 2 and 1 seed(s) per device
    mesh = multiseed.make_mesh(8, num_devices=devices)
    agents = multiseed.create_agents(create, list(range(8)), mesh)
    agents, metrics = multiseed.update_n(agents, multiseed.replicate(data, mesh), 10, 16)
    leaf = jax.tree.leaves(agents.actor.params)[0]
    assert len(leaf.sharding.device_set) == devices, leaf.sharding
    results[devices] = multiseed.fetch((agents.actor.params, agents.critic.params, metrics))
for devices in (4, 8):
    chex.assert_trees_all_close(results[1], results[devices], atol=1e-5)
print("SHARDED_OK")
"""


@pytest.mark.slow
def test_sharded_run_equals_unsharded_on_8_cpu_devices():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu",
               PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, "-c", SHARDED_SCRIPT], env=env, cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert "SHARDED_OK" in out.stdout, out.stderr[-3000:]


def test_vectorized_evaluation_equals_sequential_episodes():
    def policy(obs):  # deterministic and row-wise, like the agents' mean action
        return np.tanh(obs[:, :3] * 0.5)

    make = lambda: evaluation.make_env("Hopper-v5")  # noqa: E731
    together = evaluation.evaluate(policy, make, 3, seed=[11, 12, 13])["returns"]
    alone = [evaluation.evaluate(policy, make, 1, seed=s)["returns"][0] for s in (11, 12, 13)]
    np.testing.assert_allclose(together, alone, rtol=1e-10)
    assert len(set(np.round(together, 6))) == 3  # different seeds, different episodes
    # An int seed means seed + i for episode i.
    np.testing.assert_allclose(evaluation.evaluate(policy, make, 3, seed=11)["returns"], together)


def test_sample_actions_per_seed(data, tiny_config):
    create = lambda key: IQLLearner.create(key, data.observations[0], data.actions[0], IQLLearner.fields(tiny_config))  # noqa: E731
    agents = multiseed.create_agents(create, [0, 1], multiseed.make_mesh(2))
    obs = jnp.stack([data.observations[:5], data.observations[:5]])
    actions = multiseed.sample_actions(agents, obs, jnp.stack([jax.random.key(0)] * 2))
    assert actions.shape == (2, 5, 2)
    np.testing.assert_allclose(actions[1], multiseed.unstack(agents, 1).sample_actions(obs[1], jax.random.key(0)),
                               atol=1e-6)
    assert not np.allclose(actions[0], actions[1])


FULL_SIZE_SCRIPT = r"""
import jax, numpy as np
import dataset as dataset_lib
from harness import multiseed
from learner import IQLLearner
from configs import iql_mujoco
config = iql_mujoco.get_config()  # full size: (256, 256)
rng = np.random.default_rng(0); n = 512
data, _ = dataset_lib.from_arrays(rng.standard_normal((n, 11)), rng.uniform(-1, 1, (n, 3)), rng.standard_normal(n),
                                  rng.random(n) < 0.01, next_observations=rng.standard_normal((n, 11)))
create = lambda key: IQLLearner.create(key, data.observations[0], data.actions[0], IQLLearner.fields(config))
mesh = multiseed.make_mesh(4)
agents, metrics = multiseed.update_n(multiseed.create_agents(create, [0, 1, 2, 3], mesh), data, 2, 64)
assert metrics["critic_loss"].shape == (4,) and bool(multiseed.all_finite(agents))
print("FULL_SIZE_OK")
"""


@pytest.mark.slow  # four seeds at width 256 in a subprocess
def test_four_full_size_seeds_do_not_hang():
    # jit(vmap(create)) of four (256, 256) agents once hung XLA's CPU runtime; run it where a
    # hang is a failure, not a stalled suite.
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, "-c", FULL_SIZE_SCRIPT], env=env, cwd=ROOT, capture_output=True,
                         text=True, timeout=180)
    assert "FULL_SIZE_OK" in out.stdout, out.stderr[-3000:]
