"""Data that cannot be trained on: errors a person fixes in their files, reported in one line.

A DataError raised in a loader worker reaches the main process re-raised by PyTorch with the
worker's traceback folded into its message; ``summary`` gives back the one line that says what was
wrong, for the command-line entry points (the traceback stays behind --debug / VJM_DEBUG=1).
"""

from __future__ import annotations

__all__ = ["DataError", "MissingDataError", "UnreadableDataError"]

_WORKER_TRACEBACK = "Original Traceback"


class DataError(Exception):
    """The data of a run cannot be read; the message names the file and what to do."""

    @property
    def summary(self) -> str:
        """The message, without the worker traceback PyTorch's loader adds when it re-raises."""
        text = str(self)
        if _WORKER_TRACEBACK not in text:
            return text
        last = [line for line in text.splitlines() if line.strip()][-1]
        name, sep, message = last.partition(": ")
        return f"{message if sep and name.endswith(type(self).__name__) else last} (in a data-loader worker)"


class MissingDataError(DataError, FileNotFoundError):
    """Most paths of a source do not exist: a wrong data root or a stale list."""


class UnreadableDataError(DataError, RuntimeError):
    """Sample after sample fails to decode: the data is mostly unreadable."""
