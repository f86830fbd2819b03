"""CPU threads of a process: enough to use its cores, never so many that they fight over them.

PyTorch starts one intra-op thread per core of the machine, whatever else runs there: loader
workers, other processes of the run, other people's jobs. On a shared CPU the threads then wait for
each other and a run takes many times longer while burning more CPU. The default here counts the
cores this process may use (its affinity: a SLURM allocation, taskset, a container's cpuset), shares
them between the run's processes on this machine, and leaves one per loader worker:

    threads = use_threads(cfg.run.threads, workers=cfg.data.num_workers)   # sets torch's and logs it
"""

from __future__ import annotations

import logging
import os

import torch

__all__ = ["default_threads", "usable_cores", "use_threads"]

logger = logging.getLogger(__name__)


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity), or the machine's where that is unknown."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def default_threads(workers: int, processes: int = 1, cores: int | None = None) -> int:
    """Intra-op threads that, with ``workers`` loader workers, fit in this process's share of the
    cores (``processes`` processes of the run on this machine); at least one."""
    share = max(1, (usable_cores() if cores is None else cores) // max(1, processes))
    return max(1, share - workers)


def _env_threads() -> int | None:
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def use_threads(threads: int | None, workers: int = 0, processes: int = 1) -> int:
    """Set torch's intra-op threads: ``threads`` when given, else OMP_NUM_THREADS when set, else
    default_threads. Logs the choice, with a warning when threads and workers exceed the share."""
    cores = usable_cores()
    share = max(1, cores // max(1, processes))
    if threads is not None:
        why = "run.threads / --threads"
    elif (threads := _env_threads()) is not None:
        why = "OMP_NUM_THREADS"
    else:
        threads = default_threads(workers, processes, cores)
        why = "default: the share less one core per loader worker; set run.threads or --threads to change it"
    torch.set_num_threads(threads)
    where = f"the {cores} core(s) this process may use"
    if processes > 1:
        where += f", shared by {processes} processes ({share} each)"
    logger.info("CPU: %d intra-op thread(s) and %d loader worker(s) on %s (%s)", threads, workers, where, why)
    if threads + workers > share:
        logger.warning("CPU: %d thread(s) + %d loader worker(s) exceed the %d core(s) this process may use; on "
                       "a busy machine they slow each other down: lower data.num_workers or run.threads",
                       threads, workers, share)
    return threads
