"""tools/offline_install.py: installing from a folder of wheels keeps the JAX already installed
(the node's CUDA build) and takes the rest from the folder. The wheels are made here; nothing is
downloaded (the download step is checked as the command it runs)."""

import os
import subprocess
import sys
import zipfile

import pytest
from conftest import ROOT

from tools import offline_install

SCRIPT = os.path.join(ROOT, "tools", "offline_install.py")


def make_wheel(folder, name: str, version: str) -> None:
    """A minimal pure-Python wheel of distribution `name` at `version`."""
    module, dist = name.replace("-", "_"), f"{name.replace('-', '_')}-{version}"
    files = {f"{module}/__init__.py": f"VERSION = {version!r}\n",
             f"{dist}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
             f"{dist}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    files[f"{dist}.dist-info/RECORD"] = "".join(f"{path},,\n" for path in files) + f"{dist}.dist-info/RECORD,,\n"
    with zipfile.ZipFile(os.path.join(folder, f"{dist}-py3-none-any.whl"), "w") as z:
        for path, text in files.items():
            z.writestr(path, text)


def version_in(python: str, name: str) -> str | None:
    out = subprocess.run([python, "-c", f"import importlib.metadata as m; print(m.version({name!r}))"],
                         capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 else None


@pytest.mark.slow  # makes a virtual environment and runs pip in it
def test_install_keeps_the_installed_jax_and_takes_the_rest_from_the_folder(tmp_path):
    node, wheels = tmp_path / "node-wheels", tmp_path / "wheels"
    node.mkdir()
    wheels.mkdir()
    make_wheel(node, "jax", "0.0.1+cuda")  # what the node has: an accelerator build
    make_wheel(wheels, "jax", "9.9.9")  # the CPU wheel downloaded with the requirements
    make_wheel(wheels, "iql-probe", "1.0")
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("jax>=0.0.1\niql-probe>=1.0\n")
    subprocess.run([sys.executable, "-m", "venv", str(tmp_path / "venv")], check=True)
    python = str(tmp_path / "venv" / "bin" / "python")
    pip_env = dict(os.environ, PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1")
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-index", "--find-links", str(node), "jax==0.0.1+cuda"],
                   check=True, env=pip_env)

    run = subprocess.run([python, SCRIPT, "install", f"--wheels={wheels}", f"--requirements={requirements}"],
                         capture_output=True, text=True, env=pip_env)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "keeping the installed jax 0.0.1+cuda" in run.stdout
    assert version_in(python, "jax") == "0.0.1+cuda" and version_in(python, "iql-probe") == "1.0"
    # A node without JAX takes the folder's.
    subprocess.run([python, "-m", "pip", "uninstall", "-q", "-y", "jax"], check=True, env=pip_env)
    run = subprocess.run([python, SCRIPT, "install", f"--wheels={wheels}", f"--requirements={requirements}"],
                         capture_output=True, text=True, env=pip_env)
    assert run.returncode == 0 and version_in(python, "jax") == "9.9.9"
    # No folder: a clear error, nothing installed.
    run = subprocess.run([python, SCRIPT, "install", f"--wheels={tmp_path / 'none'}"], capture_output=True, text=True)
    assert run.returncode == 2 and "no wheel folder" in run.stderr


def test_download_asks_pip_for_binary_wheels_of_the_nodes_python_and_platform(capsys):
    # The download itself needs the network: only the command it runs is checked.
    assert offline_install.main(["download", "--dest=w", "--python_version=3.12", "--platform=manylinux_2_28_x86_64",
                                 "--dry_run"]) == 0
    command = capsys.readouterr().out
    for part in ("pip download", "--dest w", "--only-binary=:all:", "--python-version 3.12",
                 "--platform manylinux_2_28_x86_64", f"--requirement {offline_install.REQUIREMENTS}"):
        assert part in command
