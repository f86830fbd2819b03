"""Logging set-up of a process that runs vjm: training, evaluations, experiments.

    setup_logging(rank)    # once per process, again when the rank becomes known
"""

from __future__ import annotations

import logging
import sys

__all__ = ["setup_logging"]


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
