"""Command-line plumbing shared by the scripts (training, behavior data, tools).

Each script defines its flags on its own `absl.flags.FlagValues`, not on absl's global one, so
several scripts can be imported into one process (tests, notebooks) without their `--config`,
`--workdir` and `--seed` flags colliding, and importing a script has no side effect.
`run(main, flag_values)` parses the command line into that set and shows problems with the
user's input (`UserError`, bad flags, unknown `--config.<field>`) as one line, not a traceback.
"""

import difflib
import os
import sys
from typing import Callable

from absl import app, flags, logging
from ml_collections import config_flags

from dataset import DatasetError


class UserError(Exception):
    """A problem with the user's input (flags, config, dataset, env), shown as one line (as is
    `dataset.DatasetError`, which the data modules below the harness raise)."""


class Stopped(Exception):
    """A run that a signal (preemption's SIGTERM, Ctrl-C's SIGINT) stopped after it saved a
    checkpoint: not an error. `run` prints how to resume and exits with status 0 for SIGTERM
    (130 for SIGINT, the shell's convention)."""

    def __init__(self, signal_name: str, message: str):
        super().__init__(message)
        self.signal_name = signal_name


def check_fields(config, known) -> None:
    """A UserError for the first field of `config` not in `known` (the fields some part of the
    run reads), naming it and the nearest known one: a typo in a config file must not train the
    default."""
    for name in config:
        if name not in known:
            near = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f"; did you mean config.{near[0]}?" if near else "."
            raise UserError(f"config.{name} is not read by this run (its agent, data or loop){hint} Known fields: "
                            f"{', '.join(sorted(known))}")


def define_config(name: str, default: str, help_string: str, flag_values: flags.FlagValues,
                  sys_argv: list[str] | None = None):
    """A `--<name>=file.py[:variant]` config flag with `--<name>.<field>=value` overrides.

    Defined so that importing the script reads nothing from sys.argv; `parse` defines it
    again with the command line it parses.
    """
    return config_flags.DEFINE_config_file(name, default, help_string, flag_values=flag_values,
                                           lock_config=True, sys_argv=sys_argv or [])


def parse(flag_values: flags.FlagValues, argv: list[str]) -> list[str]:
    """Parse `argv` into `flag_values`; an unknown `--config.<field>` becomes a UserError."""
    if any(a in ("-h", "--help", "--helpshort", "--helpfull") for a in argv[1:]):
        print(flag_values.get_help())
        sys.exit(0)
    argv = list(argv)
    if "config" in flag_values:
        if not any(a.lstrip("-").split("=")[0] == "config" for a in argv[1:]):
            # Parse the default file again, so that overrides of it are registered now.
            argv.insert(1, f"--config={flag_values['config'].default_as_str.strip(chr(39))}")
        # config_flags registers the `--config.<field>` flags named on the command line while
        # it parses the file, from the command line given when the flag is defined: define it
        # again with this one. Flags left from an earlier parse in this process would be
        # defined twice.
        default, help_string = flag_values["config"].default_as_str.strip(chr(39)), flag_values["config"].help
        for name in [n for n in flag_values if n == "config" or n.startswith("config.")]:
            delattr(flag_values, name)
        define_config("config", default, help_string, flag_values, sys_argv=argv)
    try:
        return flag_values(argv)
    except (AttributeError, KeyError) as e:  # how ml_collections reports an unknown field
        inner = e.args[0] if e.args else e
        text = inner.args[0] if isinstance(inner, KeyError) and inner.args else str(inner)
        raise UserError(f"unknown config field: {text}") from e
    except flags.Error as e:
        raise UserError(str(e)) from e


def run(main: Callable[[list[str]], None], flag_values: flags.FlagValues) -> None:
    """`absl.app.run(main)` with the script's own flag set and one-line errors."""
    name = os.path.basename(sys.argv[0])

    def parser(argv):
        try:
            args = parse(flag_values, argv)
        except UserError as e:
            sys.exit(f"{name}: error: {e}")
        flags.FLAGS(argv[:1])  # absl's own flags (logging) keep their defaults
        return args

    def guarded(argv):
        logging.set_verbosity(logging.WARNING)  # absl INFO would echo JAX's backend probing
        try:
            return main(argv)
        except (UserError, DatasetError) as e:
            sys.exit(f"{name}: error: {e}")
        except Stopped as e:
            print(f"{name}: {e}", file=sys.stderr)
            sys.exit(0 if e.signal_name == "SIGTERM" else 130)

    app.run(guarded, flags_parser=parser)


def define_run_flags(flag_values, default_dataset: str = "local/hopper/medium-v0") -> None:
    """The flags both training scripts take (everything but --config and their own)."""
    flags.DEFINE_string("dataset", default_dataset,
                        "Minari dataset id, or a path to a .hdf5/.h5/.npz file. Ids local/<env>/<kind>-v0 and "
                        "local/antmaze|pointmaze/<kind>-v1 with shipped behavior policies (see tools/collect.py) "
                        "are built on first use.",
                        flag_values=flag_values)
    flags.DEFINE_string("workdir", None, "Folder for everything the run writes; an existing one with checkpoints is "
                        "resumed (default: runs/<algo>_<dataset>_seed<seed>).", flag_values=flag_values)
    flags.DEFINE_integer("seed", 0, "Seed of the run; every random draw derives from it.", flag_values=flag_values)
    flags.DEFINE_integer("num_seeds", 1, "Train seeds seed .. seed+num_seeds-1 together in this process.",
                         flag_values=flag_values)
    flags.DEFINE_multi_string("sweep", [], "A grid over a float hyperparameter, e.g. --sweep=beta=1,3,10 (repeatable: "
                              "the cross product); every point x --num_seeds seeds trains in this process as one "
                              "program (harness/sweep.py).", flag_values=flag_values)
    flags.DEFINE_integer("num_devices", 0, "Devices to split the seeds over (0: as many as divide num_seeds).",
                         flag_values=flag_values)
    flags.DEFINE_string("env_name", None, "Gymnasium id of the env (needed for .hdf5/.npz datasets).",
                        flag_values=flag_values)
    flags.DEFINE_bool("allow_config_change", False, "Resume a work directory's checkpoints even though the config "
                      "or flags differ from the run that wrote them.", flag_values=flag_values)
    flags.DEFINE_bool("video", False, "At the end, render one evaluation episode of the first seed to "
                      "<workdir>/video.mp4 (MuJoCo needs MUJOCO_GL=egl or osmesa).", flag_values=flag_values)
    flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize() first (multi-host jobs).",
                      flag_values=flag_values)


def check_no_arguments(argv: list[str]) -> None:
    if len(argv) > 1:
        raise UserError(f"unexpected positional arguments: {argv[1:]}")
