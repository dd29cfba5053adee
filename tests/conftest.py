"""Shared fixtures: CPU JAX, no network, tiny datasets built inside the tests."""

import csv
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from unittest import mock

# Before anything imports JAX or huggingface_hub: CPU only, and fail fast instead of retrying
# downloads on a machine without network.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ["HF_HUB_OFFLINE"] = "1"
# One compilation cache for the whole test run, in a fresh folder: the many tiny runs compile
# the same programs again and again, in this process, in pytest-xdist's workers and in the
# scripts' subprocesses (all inherit these variables). Removed when the run ends.
OWN_CACHE = None
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    OWN_CACHE = os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="iql-tests-jax-cache-")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import gymnasium as gym  # noqa: E402
import jax  # noqa: E402

# Start JAX's backend now, with one CPU device, so that no test's request for host devices
# (train scripts with --num_seeds > 1) changes the device count for the tests after it.
jax.devices()
import minari  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import toy_env  # noqa: E402

from configs import iql_mujoco  # noqa: E402
from harness import cli  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

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


def private_minari_root(tmp_path_factory, name: str):
    """A fresh Minari root for the tests of a fixture's scope (a generator: yield from it)."""
    root = tmp_path_factory.mktemp(name)
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(root)
    yield root
    if old is None:
        os.environ.pop("MINARI_DATASETS_PATH", None)
    else:
        os.environ["MINARI_DATASETS_PATH"] = old


def pytest_unconfigure(config):
    if OWN_CACHE:
        shutil.rmtree(OWN_CACHE, ignore_errors=True)


@pytest.fixture(scope="session")
def minari_root(tmp_path_factory):
    """A private Minari root holding 'test/hopper/random-v0' (600 random Hopper steps)."""
    roots = private_minari_root(tmp_path_factory, "minari")
    root = next(roots)
    collect_random("test/hopper/random-v0")
    yield root
    next(roots, None)


@pytest.fixture(scope="session")
def finished_sweep(minari_root, tmp_path_factory):
    """One finished train_offline.py run that several tests read (never write): the smoke config
    on test/hopper/random-v0, seeds 5 and 6 x beta 0 and 3, checkpoints at steps 100 and 200."""
    import train_offline

    workdir = tmp_path_factory.mktemp("finished") / "run"
    run_main(train_offline, f"--config={ROOT}/configs/iql_mujoco.py:smoke", "--dataset=test/hopper/random-v0",
             f"--workdir={workdir}", "--seed=5", "--num_seeds=2", "--sweep=beta=0,3", "--config.hidden_dims=(16,16)",
             "--config.tensorboard=False")
    return workdir


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
    from tools import train_behavior
    from configs import sac_mujoco

    workdir = tmp_path_factory.mktemp("behavior") / "pendulum"
    config = sac_mujoco.get_config("smoke")
    config.max_steps = 4000
    first = train_behavior.train("Pendulum-v1", config, str(workdir), seed=0)
    config.max_steps = 6000
    snapshots = train_behavior.train("Pendulum-v1", config, str(workdir), seed=0)
    return workdir, first, snapshots


# ---- scripts in-process ----


def parse_flags(module, *args: str) -> list[str]:
    """Parse `args` into the script `module`'s own flags, starting from their defaults."""
    argv = [f"{module.__name__.rsplit('.', 1)[-1]}.py", *args]
    # config_flags may read `--config.x` overrides from sys.argv, so it is set too.
    with mock.patch.object(sys, "argv", argv):
        module.FLAGS.unparse_flags()
        cli.parse(module.FLAGS, argv)
    return argv


def run_main(module, *args: str):
    """Run a script's `main` in this process, as `python <script> args...` would."""
    argv = parse_flags(module, *args)
    with mock.patch.object(sys, "argv", argv):
        return module.main(argv[:1])


def read_csv(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="session")
def toy(tmp_path_factory):
    """(path of an .npz dataset whose behavior only pushes left, id of its registered toy env)."""
    path = tmp_path_factory.mktemp("toy") / "toy_left_only.npz"
    toy_env.left_only_dataset(path)
    return str(path), toy_env.register()


def toy_args(toy, workdir, *extra) -> list[str]:
    """Fine-tuning flags for the toy task, on the :smoke fine-tuning config."""
    path, env_id = toy
    return [f"--config={ROOT}/configs/iql_mujoco_finetune.py:smoke", f"--dataset={path}", f"--env_name={env_id}",
            f"--workdir={workdir}", "--config.hidden_dims=(32,32)", "--config.batch_size=64",
            "--config.reward_transform=none", "--config.ref_min_score=0", "--config.ref_max_score=30",
            "--config.tensorboard=False", *extra]


def run_processes(n: int, args: list[str], folder, timeout: float = 600) -> str | None:
    """`python *args` as n processes joined by jax.distributed (one CPU device each) on this
    machine; None when all succeed, else their outputs. When one fails (its peers would wait
    for it forever) or the time is up, the others are killed."""
    with socket.socket() as s:  # a free port for the coordinator
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    procs, logs = [], [folder / f"process{pid}.log" for pid in range(n)]
    for pid in range(n):
        env = dict(os.environ, JAX_COORDINATOR_ADDRESS=f"localhost:{port}", JAX_NUM_PROCESSES=str(n),
                   JAX_PROCESS_ID=str(pid), XLA_FLAGS="--xla_force_host_platform_device_count=1",
                   JAX_PLATFORMS="cpu", PYTHONPATH=os.pathsep.join([ROOT, os.path.join(ROOT, "tests")]))
        with open(logs[pid], "w") as out:
            procs.append(subprocess.Popen([sys.executable, *args], env=env, cwd=ROOT, stdout=out,
                                          stderr=subprocess.STDOUT))
    deadline = time.time() + timeout
    while any(p.poll() is None for p in procs) and time.time() < deadline:
        if any(p.returncode not in (None, 0) for p in procs):
            break
        time.sleep(0.2)
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()
    if all(p.returncode == 0 for p in procs):
        return None
    return "\n".join(f"process {pid} (exit {p.returncode}):\n{log.read_text()[-3000:]}"
                     for pid, (p, log) in enumerate(zip(procs, logs)))


def pytest_collection_modifyitems(config, items):
    """The slow tests first (stable otherwise): pytest-xdist hands tests out in this order, so a
    long one started last would keep one worker busy after the others are done."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
