"""Train on one node: one process per device.

    python -m launch.local --fname configs/vjepa_tiny.yaml --devices cuda:0 cuda:1   # 2 GPUs, NCCL
    python -m launch.local --fname configs/vjepa_tiny.yaml --devices cpu cpu         # 2 CPU processes, gloo
    python -m launch.local --fname configs/vjepa_tiny.yaml --debug                   # main thread, no workers
    python -m launch.local --fname configs/vjepa_tiny.yaml --set run.folder=runs/vjepa_tiny_lr1e-3 optim.lr=1e-3

Several devices: torch.multiprocessing spawns one process per device, rendezvous on 127.0.0.1 at a
free port. One device (or --debug): training runs in this process.

SIGTERM, SIGUSR1 or Ctrl-C: training stops after its current step, saves, and the command exits
with one line saying so (code 128 + the signal's number); the same command resumes. This process
passes the signals on to the ones it spawned. A spawned process that dies (SIGKILL, the OOM killer)
takes the others down with it rather than leaving them waiting in a collective; the command exits
with one line naming it (code 128 + the signal's number) and the same command resumes from the last
checkpoint. Every process gets NCCL_NVLS_ENABLE=0 unless it is set (vjm.train.distributed).
A run folder whose checkpoint was trained with another recipe is refused before anything is built
(--allow-config-change continues it with the change).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import logging
import os
import signal
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.multiprocessing as mp

from launch import USER_ERRORS, TrainFn, add_config_args, config_from_args, run_training
from vjm.config import Config
from vjm.console import debug_requested, error_line, setup_logging
from vjm.train.distributed import find_free_port, resolve_device
from vjm.train.run_folder import check_run_folder
from vjm.train.stopping import STOP_SIGNALS, RunHalted

logger = logging.getLogger(__name__)

__all__ = ["build_parser", "check_devices", "default_devices", "launch_local", "main"]

_DIST_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def default_devices() -> list[str]:
    """Every visible GPU, or the CPU when there is none."""
    if torch.cuda.is_available():
        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return ["cpu"]


def check_devices(devices: Sequence[str]) -> list[str]:
    """Validate a device list for one process group; returns canonical names ('cpu', 'cuda:0', ...)."""
    if not devices:
        raise ValueError("no devices given; use e.g. --devices cpu, or --devices cuda:0 cuda:1")
    resolved = [str(resolve_device(d, local_rank=i)) for i, d in enumerate(devices)]
    if len({torch.device(d).type for d in resolved}) > 1:
        raise ValueError(f"devices {list(devices)} mix CPU and CUDA; a process group has one backend "
                         "(gloo for CPU, NCCL for CUDA): list only cpu or only cuda devices")
    repeated = [d for d, n in collections.Counter(resolved).items() if n > 1 and d != "cpu"]
    if repeated:
        raise ValueError(f"devices {list(devices)} name {', '.join(repeated)} more than once; "
                         "NCCL needs one process per GPU")
    return resolved


@contextlib.contextmanager
def _dist_env(rank: int, world_size: int, port: int | None) -> Iterator[None]:
    """Set the torchrun-style variables for this process; restore the previous ones afterwards."""
    saved = {k: os.environ.get(k) for k in _DIST_VARS}
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank),
                      LOCAL_WORLD_SIZE=str(world_size))
    if port is not None:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _worker(rank: int, cfg: Config, devices: list[str], port: int, train_fn: TrainFn | None, halts,
            allow_config_change: bool) -> None:
    """Body of a spawned process (module-level so that spawn can pickle it).

    A run that halts (a stop signal, divergence) sends its message and exit code to the parent
    through `halts` (from rank 0; every rank halts together) instead of a traceback.
    """
    world_size = len(devices)
    with _dist_env(rank, world_size, port):
        try:
            # N processes on this machine: each takes its share of the cores, not all of them.
            run_training(cfg, devices[rank], train_fn, allow_config_change=allow_config_change,
                         local_processes=world_size)
        except RunHalted as halt:
            if rank == 0:
                halts.put((str(halt), halt.exit_code))


@contextlib.contextmanager
def _forwarding_signals(processes: Sequence[mp.Process]) -> Iterator[None]:
    """Pass stop signals received here on to the spawned processes, which stop after their step."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def forward(signum: int, frame: Any) -> None:
        for process in processes:
            if process.is_alive():
                os.kill(process.pid, signum)

    previous = {signum: signal.signal(signum, forward) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _spawn(cfg: Config, devices: list[str], train_fn: TrainFn | None, allow_config_change: bool) -> None:
    """One process per device; raises RunHalted when they halted."""
    port = find_free_port()
    logger.info("spawning %d processes on %s (rendezvous 127.0.0.1:%d)", len(devices), ", ".join(devices), port)
    halts = mp.get_context("spawn").SimpleQueue()
    context = mp.start_processes(_worker, args=(cfg, devices, port, train_fn, halts, allow_config_change),
                                 nprocs=len(devices),
                                 join=False, start_method="spawn")
    logger.info("process ids: %s", ", ".join(f"rank {rank} {p.pid}" for rank, p in enumerate(context.processes)))
    with _forwarding_signals(context.processes):
        try:
            while not context.join():
                pass
        except mp.ProcessExitedException as died:
            # A rank killed from outside (SIGKILL, the OOM killer): join() has stopped the others
            # (SIGTERM, then SIGKILL after a grace period) instead of leaving them in a collective.
            how = died.signal_name or f"exit code {died.exit_code}"
            code = 128 - died.exit_code if died.exit_code < 0 else died.exit_code or 1
            raise RunHalted(f"rank {died.error_index} (process {died.error_pid}) died ({how}); the other ranks were "
                            "stopped. Run the same command to resume from the last checkpoint", code) from None
    if not halts.empty():
        raise RunHalted(*halts.get())


def launch_local(cfg: Config, devices: Sequence[str] = ("cpu",), *, debug: bool = False,
                 train_fn: TrainFn | None = None, allow_config_change: bool = False) -> Any:
    """Train on this node with one process per device.

    ``debug`` runs a single process in the calling thread with no data-loader workers, so that a
    debugger can step through everything. Returns the trainer's result when training ran in this
    process; with several processes, results are in the run folder and None is returned. Raises
    RunHalted when training stopped early (a stop signal, divergence). ``allow_config_change``
    resumes a checkpoint trained with another recipe (vjm.train.run_folder).
    """
    devices = check_devices(devices)
    if debug:
        if len(devices) > 1:
            logger.warning("--debug runs one process: using %s, ignoring %s", devices[0], ", ".join(devices[1:]))
        devices = devices[:1]
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, num_workers=0))
        logger.info("debug mode: one process in the main thread, data.num_workers = 0")
    if len(devices) == 1:
        with _dist_env(0, 1, None):
            return run_training(cfg, devices[0], train_fn, allow_config_change=allow_config_change)
    _spawn(cfg, devices, train_fn, allow_config_change)
    return None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m launch.local", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(parser)
    parser.add_argument("--devices", nargs="+", default=None, metavar="DEVICE",
                        help="one process per device: cpu (repeatable), cuda, cuda:N; default: every GPU, else cpu")
    parser.add_argument("--debug", action="store_true",
                        help="one process in the main thread, no data-loader workers (for a debugger); errors "
                             "show their traceback (as with VJM_DEBUG=1)")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(0)
    try:
        cfg = config_from_args(args)
        devices = check_devices(args.devices or default_devices())
        check_run_folder(cfg, args.allow_config_change)
    except (*USER_ERRORS, ValueError) as e:
        parser.exit(2, error_line(e))
    try:
        launch_local(cfg, devices, debug=args.debug, allow_config_change=args.allow_config_change)
    except USER_ERRORS as e:  # met while training: the data, or a checkpoint this config cannot resume
        if debug_requested(args.debug):
            raise
        parser.exit(2, error_line(e))
    except RunHalted as halt:
        parser.exit(halt.exit_code, f"{halt}\n")
    except KeyboardInterrupt:  # before training could catch it (imports, start-up)
        parser.exit(128 + signal.SIGINT, "interrupted before training started\n")


if __name__ == "__main__":
    main()
