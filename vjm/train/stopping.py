"""Why a run stops before its last step, and stopping cleanly on a signal.

A signal handler runs between two bytecodes of the main thread, possibly in the middle of a step,
so it only records the request. The training loop reads it at each step (all ranks agree through
the step's one reduction, vjm.train.step_report, so none waits in a collective for a rank that
left), saves a checkpoint after the step and raises :class:`TrainingStopped`, whose one-line
message the launchers print.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterable, Iterator

logger = logging.getLogger(__name__)

__all__ = ["STOP", "STOP_SIGNALS", "DivergenceError", "RunHalted", "StopRequest", "TrainingStopped"]

# SIGTERM: schedulers and `kill`; SIGUSR1: a chosen "checkpoint and stop"; SIGINT: Ctrl-C.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)


class RunHalted(RuntimeError):
    """The run ended before its last step for the reason its one-line message gives."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


class DivergenceError(RunHalted):
    """The weights, the optimiser state or the losses went bad; nothing bad was saved."""


class TrainingStopped(RunHalted):
    """A signal asked the run to stop; it stopped at a step boundary after saving."""

    def __init__(self, message: str, signum: int):
        super().__init__(message, exit_code=128 + signum)  # the shell's code for "ended by this signal"
        self.signum = signum


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


class StopRequest:
    """The first stop signal this process received while catching (signals are process-wide too)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._depth = 0

    def request(self, signum: int, frame=None) -> None:
        """The signal handler: record, nothing else (see the module note)."""
        if self.signum is None:
            self.signum = signum
            logger.warning("received %s: stopping after this step, once a checkpoint is saved", signal_name(signum))

    @contextlib.contextmanager
    def catching(self, signals: Iterable[int] = STOP_SIGNALS, take_over: bool = False) -> Iterator[StopRequest]:
        """Record `signals` as stop requests inside the block; the previous handlers come back after it.

        A signal that this process already handles in Python (submitit's handlers under SLURM, say)
        is left to that handler unless `take_over`. Outside the main thread nothing is installed.
        The request is forgotten when the outermost block ends.
        """
        previous = {}
        if threading.current_thread() is threading.main_thread():
            for signum in signals:
                handler = signal.getsignal(signum)
                if take_over or not self._handled_elsewhere(handler):
                    previous[signum] = signal.signal(signum, self.request)
        self._depth += 1
        try:
            yield self
        finally:
            self._depth -= 1
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            if self._depth == 0:
                self.signum = None

    def _handled_elsewhere(self, handler) -> bool:
        return callable(handler) and handler is not signal.default_int_handler and handler != self.request


STOP = StopRequest()
