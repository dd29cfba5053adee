"""Install on a machine without internet (a GPU node) from wheels downloaded elsewhere, keeping
the JAX that is already installed there (a CUDA or TPU build) instead of the CPU wheel.

On a machine with a network, for the node's Python and platform:

    python tools/offline_install.py download --dest=wheels --python_version=3.11 \
        --platform=manylinux_2_28_x86_64
    # copy wheels/ and the project to the node, then there:
    python tools/offline_install.py install --wheels=wheels

`download` runs `pip download` of requirements.txt (binary wheels only, for that Python and
platform, with JAX's CPU wheels for nodes that have no JAX). `install` runs `pip install
--no-index --find-links=<wheels>` of requirements.txt; when `jax` / `jaxlib` (and JAX's CUDA or
TPU plugins) are installed already, it pins them at their installed versions, so pip keeps them
or stops with a conflict, and never swaps them for the CPU wheels in the folder. Standard library
only: it runs before anything is installed.
"""

import argparse
import importlib.metadata
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REQUIREMENTS = os.path.join(ROOT, "requirements.txt")
# Installed, these stay as they are: JAX itself and the plugins that make it use an accelerator.
KEEP = ("jax", "jaxlib", "jax-cuda12-plugin", "jax-cuda12-pjrt", "jax-cuda13-plugin", "jax-cuda13-pjrt", "libtpu")


def installed(names=KEEP) -> dict:
    """{name: version} of those of `names` installed in this interpreter."""
    found = {}
    for name in names:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


def download_command(dest: str, python_version: str, platform: str, requirements: str = REQUIREMENTS) -> list:
    """`pip download` of the requirements as wheels for another Python and platform."""
    return [sys.executable, "-m", "pip", "download", "--dest", dest, "--requirement", requirements,
            "--only-binary=:all:", "--python-version", python_version, "--platform", platform,
            "--implementation", "cp"]


def install_command(wheels: str, requirements: str, constraints: str) -> list:
    return [sys.executable, "-m", "pip", "install", "--no-index", "--find-links", wheels,
            "--requirement", requirements, "--constraint", constraints]


def install(wheels: str, requirements: str = REQUIREMENTS) -> int:
    """Install from the folder `wheels` only, pinning the JAX packages already installed."""
    if not os.path.isdir(wheels):
        print(f"error: no wheel folder {wheels}; make it with `python tools/offline_install.py download` on a "
              "machine with a network", file=sys.stderr)
        return 2
    keep = installed()
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write("".join(f"{name}=={version}\n" for name, version in keep.items()))
        constraints = f.name
    try:
        if keep:
            print("keeping the installed " + ", ".join(f"{n} {v}" for n, v in keep.items()))
        command = install_command(wheels, requirements, constraints)
        print("$ " + " ".join(command), flush=True)
        code = subprocess.run(command).returncode
    finally:
        os.unlink(constraints)
    if code == 0 and keep and installed() != keep:  # pip must not have changed them; say so loudly if it did
        print(f"error: the JAX packages changed: {keep} -> {installed()}", file=sys.stderr)
        return 1
    return code


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    down = sub.add_parser("download", help="on a machine with a network: the wheels of requirements.txt")
    down.add_argument("--dest", default="wheels")
    down.add_argument("--python_version", default=f"{sys.version_info.major}.{sys.version_info.minor}",
                      help="the node's Python, e.g. 3.11")
    down.add_argument("--platform", default="manylinux_2_28_x86_64", help="the node's wheel platform tag")
    down.add_argument("--requirements", default=REQUIREMENTS)
    down.add_argument("--dry_run", action="store_true", help="print the pip command only")
    inst = sub.add_parser("install", help="on the node: install from the wheel folder, keeping its JAX")
    inst.add_argument("--wheels", default="wheels")
    inst.add_argument("--requirements", default=REQUIREMENTS)
    args = parser.parse_args(argv)
    if args.command == "download":
        command = download_command(args.dest, args.python_version, args.platform, args.requirements)
        print("$ " + " ".join(command), flush=True)
        return 0 if args.dry_run else subprocess.run(command).returncode
    return install(args.wheels, args.requirements)


if __name__ == "__main__":
    sys.exit(main())
