"""Logging set-up and error lines of a process that runs vjm: training, evaluations, experiments.

    setup_logging(rank)    # once per process, again when the rank becomes known
    except USER_ERRORS as e:
        if debug_requested(args.debug): raise
        parser.exit(2, error_line(e))    # "error: <what was wrong, where, what to do>"
"""

from __future__ import annotations

import logging
import os
import sys

__all__ = ["debug_requested", "error_line", "setup_logging"]


def debug_requested(flag: bool = False) -> bool:
    """Whether errors should show their traceback: a --debug flag, or VJM_DEBUG=1 in the environment."""
    return flag or os.environ.get("VJM_DEBUG", "").strip() not in ("", "0")


def error_line(exc: BaseException) -> str:
    """The one line a command prints for a person's error (a config, a file, the data) instead of a
    traceback. A data error gives its summary (without a loader worker's traceback) and says how to
    see the traceback."""
    summary = getattr(exc, "summary", None)  # vjm.data.errors.DataError, without importing torch here
    if summary is not None:
        return f"error: {summary} (VJM_DEBUG=1 shows the traceback)\n"
    return f"error: {exc}\n"


def setup_logging(rank: int = 0) -> None:
    """Configure the root logger of this process: rank in every line; INFO on rank 0, WARNING elsewhere.

    Calling it again (e.g. once the rank is known) replaces the handler it installed before.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_vjm_launch", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    # The mark that finds this handler again (the name predates this module; tests look for it).
    handler._vjm_launch = True  # type: ignore[attr-defined]
    handler.setFormatter(logging.Formatter(f"%(asctime)s [rank {rank}] %(levelname)s %(name)s: %(message)s",
                                           datefmt="%Y-%m-%d %H:%M:%S"))
    root.addHandler(handler)
    root.setLevel(logging.INFO if rank == 0 else logging.WARNING)
