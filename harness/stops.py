"""How a run stops before its end: a signal (preemption's SIGTERM, Ctrl-C's SIGINT: the loop saves
a checkpoint and stops, which is not an error) or a non-finite loss or parameter (the run stops
before it writes a bad checkpoint)."""

import signal
from typing import Optional

import numpy as np

from harness import cli, multiseed


class StopSignals:
    """While the `with` block runs, SIGTERM and SIGINT set `name` ("SIGTERM", "SIGINT") instead of
    ending the process; the loop checkpoints and calls `stop_if_asked`. The handlers that were
    there before are put back on leaving the block."""

    def __init__(self):
        self.name: Optional[str] = None
        self._previous: dict = {}

    def __enter__(self) -> "StopSignals":
        def request_stop(signum, frame):
            del frame
            self.name = signal.Signals(signum).name

        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[sig] = signal.signal(sig, request_stop)
            except ValueError:  # not the main thread (e.g. some notebook runners)
                pass
        return self

    def __exit__(self, *exc_info) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def stop_if_asked(self, step: int, checkpoint_path: str) -> None:
        """After the checkpoint at `step` is saved: end the run (cli.Stopped) if a signal came."""
        if self.name:
            raise cli.Stopped(self.name, f"stopped by {self.name} at step {step}; saved {checkpoint_path}: run the "
                              "same command again to resume")


def check_finite(step: int, first: int, agents, metrics: dict, checkpointer, members=None) -> None:
    """Stop, naming the steps `first`..`step`, the quantity and (in a sweep) the members' seeds
    and hyperparameters, if a loss or a parameter is NaN or infinite; the newest checkpoint
    (written before these steps) stays the newest."""
    if bool(multiseed.all_finite((metrics, agents))):
        return
    metrics = multiseed.fetch(metrics)
    names = sorted(k for k, v in metrics.items() if not np.all(np.isfinite(v)))
    what = f"training metric(s) {names}" if names else "parameters"
    last = checkpointer.steps()
    kept = f"the last good checkpoint is {checkpointer.path(last[0])}" if last else "no checkpoint was written"
    span = f"step {step}" if first >= step else f"steps {first}..{step}"
    who = ""
    if members is not None and members.fields:
        bad = np.flatnonzero(~multiseed.fetch(multiseed.finite_per_member((metrics, agents))))
        who = " of " + "; ".join(f"seed {members.seeds[j]} at {members.label(j)}" for j in bad)
    raise cli.UserError(f"non-finite {what}{who} in {span}; stopped; {kept}")
