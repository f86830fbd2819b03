"""Entry points that start pre-training.

    python -m launch.submitit --fname configs/vjepa_tiny.yaml      # SLURM, or locally without it
    python -m launch.local --fname configs/vjepa_tiny.yaml --devices cuda:0 cuda:1

Both end in :func:`run_training`, once per process: join the process group, set up logging,
call the trainer (``vjm.train.engine.train``), leave the group. They write nothing themselves;
the trainer owns the run folder. From the start of each process SIGTERM, SIGUSR1 and SIGINT ask
the trainer to stop after its current step with a checkpoint (vjm.train.stopping); it then raises
``RunHalted``, whose one-line message the command-line entry points print instead of a traceback.
A person's errors (the config, a resume with another recipe, the data) are one ``error:`` line too
(``USER_ERRORS``); --debug or VJM_DEBUG=1 shows their traceback.
"""

from __future__ import annotations

import argparse
import functools
import logging
from collections.abc import Callable
from typing import Any

from vjm.config import Config, ConfigError, load_config
from vjm.console import setup_logging
from vjm.cpu import use_threads
from vjm.data.errors import DataError
from vjm.train.distributed import cleanup, init_distributed
from vjm.train.run_folder import ALLOW_FLAG
from vjm.train.stopping import STOP

logger = logging.getLogger(__name__)

# ``train_fn(cfg, dist)``; with --allow-config-change it is called with ``allow_config_change=True``.
TrainFn = Callable[..., Any]

# Errors of the person running the command, printed as one `error:` line (the traceback with --debug).
USER_ERRORS = (ConfigError, DataError, FileNotFoundError)

__all__ = ["USER_ERRORS", "TrainFn", "add_config_args", "config_from_args", "run_training"]


def add_config_args(parser: argparse.ArgumentParser) -> None:
    """--fname, --set, --threads and --allow-config-change, shared by the launchers."""
    parser.add_argument("--fname", required=True, help="YAML config file, e.g. configs/vjepa_tiny.yaml")
    parser.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help="override config keys, e.g. --set optim.lr=1e-3 masks.0.num_blocks=4; a new "
                             "experiment beside another: --set run.folder=runs/vjepa_tiny_lr1e-3 optim.lr=1e-3")
    parser.add_argument("--threads", type=int, metavar="N",
                        help="intra-op CPU threads of each training process (run.threads); default: the cores "
                             "the process may use less its loader workers, or OMP_NUM_THREADS when set")
    parser.add_argument(ALLOW_FLAG, dest="allow_config_change", action="store_true",
                        help="resume a run folder whose checkpoint was trained with another recipe (optim.lr, "
                             "say), recording the change in its config_history/; without it such a resume is "
                             "refused")


def config_from_args(args: argparse.Namespace) -> Config:
    """The config of --fname with --set (and --threads as run.threads) applied."""
    overrides = list(args.overrides)
    if args.threads is not None:
        overrides.append(f"run.threads={args.threads}")
    return load_config(args.fname, overrides)


def run_training(cfg: Config, device: str = "auto", train_fn: TrainFn | None = None, *,
                 allow_config_change: bool = False, local_processes: int = 1) -> Any:
    """One training process: join the group the launcher made, train, leave. Returns the trainer's result.

    ``train_fn`` defaults to ``vjm.train.engine.train``; it must be a module-level function when the
    launcher pickles it into other processes. ``local_processes``: the run's processes on this
    machine that share the cores this one may use (launch.local's CPU processes).
    """
    dist = init_distributed(device)
    setup_logging(dist.rank)
    logger.info("process %d of %d on %s; run folder %s", dist.rank, dist.world_size, dist.device, cfg.run_dir)
    use_threads(cfg.run.threads, workers=cfg.data.num_workers, processes=local_processes)
    finished = False  # every rank reached the last step
    try:
        # A stop asked for while the model and data are being built takes effect after the first step.
        with STOP.catching():
            if train_fn is None:
                from vjm.train.engine import train as train_fn  # imported here: launching must not need its deps
            if allow_config_change:
                train_fn = functools.partial(train_fn, allow_config_change=True)
            result = train_fn(cfg, dist)
            finished = True
            return result
    finally:
        cleanup(together=finished)
