"""The house rules: learner.py + networks.py stand alone, imports are visible at the top of each
module, library modules never import scripts, and importing starts no JAX backend."""

import ast
import glob
import os
import shutil
import subprocess
import sys

import pytest
from conftest import ROOT

# Imported inside functions on purpose: optional or heavy, needed only by some commands.
LAZY_IMPORTS_ALLOWED = {"minari", "h5py", "tensorboardX", "imageio", "imageio_ffmpeg", "matplotlib", "gymnasium_robotics"}
# Every module of behavior/ is a library (its command-line scripts are tools/collect.py and tools/train_behavior.py).
BEHAVIOR_LIBRARIES = tuple(f"behavior.{os.path.basename(p)[:-3]}" for p in sorted(glob.glob(f"{ROOT}/behavior/*.py"))
                           if not p.endswith("__init__.py"))
SCRIPTS = ("train_offline", "train_finetune", "tools.collect", "tools.train_behavior", "tools.bench", "tools.bench_child",
           "tools.suite", "tools.plot")
LIBRARIES = ("learner", "idql", "networks", "dataset", "replay_buffer", "evaluation", "harness.cli", "harness.algorithms", "harness.evaluator", "harness.rundir", "harness.stops", "harness.setup",
             "harness.devices", "harness.multiseed", "harness.online", "harness.outputs", "harness.sources",
             *BEHAVIOR_LIBRARIES)

STANDALONE = r'''
import importlib.abc
import importlib.metadata
import re
import sys

# Only what jax, flax and optax need may be imported: everything else is as if not installed.
def closure(names):
    seen, todo = set(), list(names)
    while todo:
        name = todo.pop().lower().replace("_", "-")
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        todo += [re.match(r"[A-Za-z0-9._-]+", r).group(0) for r in requires if "extra ==" not in r]
    return seen

allowed_dists = closure(["jax", "flax", "optax"])
blocked = {module for module, dists in importlib.metadata.packages_distributions().items()
           if not any(d.lower().replace("_", "-") in allowed_dists for d in dists)}
assert {"gymnasium", "minari", "ml_collections"} <= blocked, "the blocker would block nothing"

class OnlyJaxFlaxOptax(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ImportError(f"{name} is not installed here (only jax, flax, optax)")
        return None

sys.meta_path.insert(0, OnlyJaxFlaxOptax())
sys.path.insert(0, sys.argv[1])

import flax.struct
import jax
import jax.numpy as jnp
from learner import IQLLearner

class Data(flax.struct.PyTreeNode):
    observations: jax.Array
    actions: jax.Array
    rewards: jax.Array
    masks: jax.Array
    next_observations: jax.Array

    def sample(self, key, batch_size):
        idx = jax.random.randint(key, (batch_size,), 0, self.rewards.shape[0])
        return jax.tree.map(lambda x: x[idx], self)

n = 512
k1, k2 = jax.random.split(jax.random.key(0))
obs = jax.random.normal(k1, (n, 5))
data = Data(obs, jnp.clip(obs[:, :2], -0.9, 0.9), jnp.ones(n), jnp.zeros(n), jax.random.normal(k2, (n, 5)))
agent = IQLLearner.create(jax.random.key(0), obs[0], data.actions[0])  # no config: the defaults
_, first = agent.update(data.sample(jax.random.key(1), 64))
agent, info = agent.update_n(data, 300, 64)
actions = agent.sample_actions(obs[:7], jax.random.key(2))
assert actions.shape == (7, 2) and bool(jnp.all(jnp.abs(actions) <= 1)), actions
assert float(info["critic_loss"]) < 0.1 * float(first["critic_loss"]), (first["critic_loss"], info["critic_loss"])
assert not any(m in sys.modules for m in ("dataset", "ml_collections", "gymnasium", "minari")), "a stray import"
print("STANDALONE_OK", float(first["critic_loss"]), float(info["critic_loss"]))
'''


def test_learner_and_networks_alone_train_and_act_with_no_config(tmp_path):
    folder = tmp_path / "copy"
    folder.mkdir()
    for name in ("learner.py", "networks.py"):
        shutil.copy(os.path.join(ROOT, name), folder / name)
    script = tmp_path / "standalone.py"
    script.write_text(STANDALONE)
    # -I: no PYTHONPATH, no current folder on the path; only the copy is importable.
    out = subprocess.run([sys.executable, "-I", str(script), str(folder)], cwd=tmp_path, capture_output=True,
                         text=True, timeout=300, env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert "STANDALONE_OK" in out.stdout, out.stdout[-2000:] + out.stderr[-3000:]


def project_modules() -> list[str]:
    files = glob.glob(os.path.join(ROOT, "*.py")) + glob.glob(os.path.join(ROOT, "*", "*.py"))
    return [f for f in files if os.sep + "tests" + os.sep not in f]


def test_imports_are_at_the_top_of_each_module():
    late = []
    for path in project_modules():
        tree = ast.parse(open(path).read())
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                for inner in ast.walk(node):
                    if isinstance(inner, ast.Import):
                        names = [a.name for a in inner.names]
                    elif isinstance(inner, ast.ImportFrom):
                        names = [inner.module or ""]
                    else:
                        continue
                    late += [f"{os.path.relpath(path, ROOT)}:{inner.lineno} {n}" for n in names
                             if n.split(".")[0] not in LAZY_IMPORTS_ALLOWED]
    assert not late, late
    assert len(project_modules()) >= 20  # the walk found the project


CHECK_IMPORTS = r"""
import sys
from jax._src import xla_bridge
libraries, scripts = sys.argv[1].split(","), sys.argv[2].split(",")
for name in libraries:
    __import__(name)
imported = [s for s in scripts if s in sys.modules]
assert not imported, f"library modules imported the scripts {imported}"
for name in scripts:
    __import__(name)
assert not xla_bridge.backends_are_initialized(), "an import started JAX's backend"
print("IMPORTS_OK")
"""


def test_libraries_import_no_scripts_and_nothing_starts_jax_at_import():
    out = subprocess.run([sys.executable, "-c", CHECK_IMPORTS, ",".join(LIBRARIES), ",".join(SCRIPTS)], cwd=ROOT,
                         capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT))
    assert "IMPORTS_OK" in out.stdout, out.stderr[-3000:]


CHECK_LEAF = r"""
import sys
for name in sys.argv[1].split(","):
    __import__(name)
harness = sorted(m for m in sys.modules if m == "harness" or m.startswith("harness."))
assert not harness, f"behavior's library modules imported {harness}"
print("LEAF_OK")
"""


def test_behavior_libraries_import_nothing_from_the_harness():
    """behavior/ is a library below the harness (harness/sources.py builds datasets with it); its
    scripts, tools/collect.py and tools/train_behavior.py, use the harness's flags and output files."""
    assert len(BEHAVIOR_LIBRARIES) == 7 and "behavior.collect" not in BEHAVIOR_LIBRARIES
    out = subprocess.run([sys.executable, "-c", CHECK_LEAF, ",".join(BEHAVIOR_LIBRARIES)], cwd=ROOT,
                         capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT))
    assert "LEAF_OK" in out.stdout, out.stderr[-3000:]


CHECK_LOCOMOTION = r"""
import sys
from unittest import mock
import train_offline
from harness import cli
argv = ["train_offline.py", "--config=configs/iql_mujoco.py:smoke", "--dataset=" + sys.argv[1], "--workdir=" + sys.argv[2],
        "--config.eval_episodes=1"]
with mock.patch.object(sys, "argv", argv):
    cli.parse(train_offline.FLAGS, argv)
    train_offline.main(argv[:1])
robotics = sorted(m for m in sys.modules if m.startswith("gymnasium_robotics"))
assert not robotics, f"a locomotion run imported {robotics[:3]}"
print("NO_ROBOTICS")
"""


@pytest.mark.slow  # a whole run in a fresh interpreter
def test_a_locomotion_run_imports_no_robotics_package(minari_root, tmp_path):
    out = subprocess.run([sys.executable, "-c", CHECK_LOCOMOTION, "test/hopper/random-v0", str(tmp_path / "run")],
                         cwd=ROOT, capture_output=True, text=True, timeout=600,
                         env=dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT, MINARI_DATASETS_PATH=str(minari_root)))
    assert "NO_ROBOTICS" in out.stdout, out.stderr[-3000:]
