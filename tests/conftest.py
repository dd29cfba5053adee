"""Shared fixtures: CPU JAX, no network, tiny datasets built inside the tests."""

import os

# Before anything imports JAX or huggingface_hub: CPU only, and fail fast instead of retrying
# downloads on a machine without network.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ["HF_HUB_OFFLINE"] = "1"

import gymnasium as gym  # noqa: E402
import jax  # noqa: E402

# Start JAX's backend now, with one CPU device, so that no test's request for host devices
# (train scripts with --num_seeds > 1) changes the device count for the tests after it.
jax.devices()
import minari  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from configs import iql_mujoco  # noqa: E402

HOPPER_REF = (-20.272305, 3234.3)


def collect_random(dataset_id: str, env_id: str = "Hopper-v5", steps: int = 600, seed: int = 0,
                   max_episode_steps: int = 20) -> minari.MinariDataset:
    """A Minari dataset of a random policy, with short time limits so that episodes end both
    by termination and by truncation."""
    env = minari.DataCollector(gym.make(env_id, max_episode_steps=max_episode_steps))
    env.reset(seed=seed)
    env.action_space.seed(seed)
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()
    return env.create_dataset(
        dataset_id, eval_env=env_id, algorithm_name="random",
        ref_min_score=HOPPER_REF[0], ref_max_score=HOPPER_REF[1],
    )


@pytest.fixture(scope="session")
def minari_root(tmp_path_factory):
    """A private Minari root holding 'test/hopper/random-v0' (600 random Hopper steps)."""
    root = tmp_path_factory.mktemp("minari")
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(root)
    collect_random("test/hopper/random-v0")
    yield root
    if old is None:
        os.environ.pop("MINARI_DATASETS_PATH", None)
    else:
        os.environ["MINARI_DATASETS_PATH"] = old


@pytest.fixture
def tiny_config():
    config = iql_mujoco.get_config("smoke")
    config.hidden_dims = (16, 16)
    return config


def bandit_arrays(n: int = 1000, good_fraction: float = 0.1, seed: int = 0) -> dict:
    """A one-state, one-step bandit: action -0.5 pays 0 (common), +0.5 pays 1 (rare)."""
    rng = np.random.default_rng(seed)
    good = rng.random(n) < good_fraction
    actions = np.where(good, 0.5, -0.5)[:, None] + 0.05 * rng.standard_normal((n, 1))
    return {
        "observations": np.ones((n, 2), np.float32),
        "actions": actions.astype(np.float32),
        "rewards": good.astype(np.float32),
        "terminals": np.ones(n, np.float32),
    }


@pytest.fixture(scope="session")
def pendulum_behavior(tmp_path_factory):
    """A small SAC behavior run on Pendulum-v1: 4000 steps, then resumed to 6000."""
    import train_behavior
    from configs import sac_mujoco

    workdir = tmp_path_factory.mktemp("behavior") / "pendulum"
    config = sac_mujoco.get_config("smoke")
    config.max_steps = 4000
    first = train_behavior.train("Pendulum-v1", config, str(workdir), seed=0)
    config.max_steps = 6000
    snapshots = train_behavior.train("Pendulum-v1", config, str(workdir), seed=0)
    return workdir, first, snapshots
