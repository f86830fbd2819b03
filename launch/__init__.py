"""Entry points that start pre-training.

    python -m launch.submitit --fname configs/vjepa_tiny.yaml      # SLURM, or locally without it
    python -m launch.local --fname configs/vjepa_tiny.yaml --devices cuda:0 cuda:1

Both end in :func:`run_training`, once per process: join the process group, set up logging,
call the trainer (``vjm.train.engine.train``), leave the group. They write nothing themselves;
the trainer owns the run folder. From the start of each process SIGTERM, SIGUSR1 and SIGINT ask
the trainer to stop after its current step with a checkpoint (vjm.train.stopping); it then raises
``RunHalted``, whose one-line message the command-line entry points print instead of a traceback.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from typing import Any

from vjm.config import Config
from vjm.console import setup_logging
from vjm.train.distributed import DistInfo, cleanup, init_distributed
from vjm.train.stopping import STOP

logger = logging.getLogger(__name__)

TrainFn = Callable[[Config, DistInfo], Any]

__all__ = ["TrainFn", "add_config_args", "run_training"]


def add_config_args(parser: argparse.ArgumentParser) -> None:
    """--fname and --set, shared by the launchers."""
    parser.add_argument("--fname", required=True, help="YAML config file, e.g. configs/vjepa_tiny.yaml")
    parser.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help="override config keys, e.g. --set optim.lr=1e-3 masks.0.num_blocks=4")


def run_training(cfg: Config, device: str = "auto", train_fn: TrainFn | None = None) -> Any:
    """One training process: join the group the launcher made, train, leave. Returns the trainer's result.

    ``train_fn`` defaults to ``vjm.train.engine.train``; it must be a module-level function when the
    launcher pickles it into other processes.
    """
    dist = init_distributed(device)
    setup_logging(dist.rank)
    logger.info("process %d of %d on %s; run folder %s", dist.rank, dist.world_size, dist.device, cfg.run_dir)
    try:
        # A stop asked for while the model and data are being built takes effect after the first step.
        with STOP.catching():
            if train_fn is None:
                from vjm.train.engine import train as train_fn  # imported here: launching must not need its deps
            return train_fn(cfg, dist)
    finally:
        cleanup()
