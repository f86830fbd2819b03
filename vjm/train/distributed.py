"""torch.distributed set-up from the launcher's environment, and the few collectives training needs.

Who launched us is read from the environment:
  * torchrun, or launch.local's spawner: RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT;
  * a submitit job (SLURM, or submitit's local executor): submitit.JobEnvironment, which is
    exported to the same variables first.
With neither, or a world of one process, no process group is created.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass

import torch
import torch.distributed as dist

logger = logging.getLogger(__name__)

__all__ = [
    "DistInfo",
    "all_reduce_mean",
    "cleanup",
    "find_free_port",
    "get_rank",
    "get_world_size",
    "init_distributed",
    "resolve_device",
]


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: global rank, number of processes, rank on its node, its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def find_free_port() -> int:
    """A TCP port that is free on this host right now (for MASTER_PORT of a one-node job)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    """Turn 'auto' | 'cpu' | 'cuda' | 'cuda:N' into this process's device.

    'auto' is CUDA when available, else CPU. A bare 'cuda' picks the GPU of this local rank; when the
    scheduler already bound one GPU per process (a single visible device), that one.
    """
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(f"unknown device {device!r}; use 'auto', 'cpu', 'cuda' or 'cuda:N'") from None
    if dev.type == "cpu":
        return torch.device("cpu")
    if dev.type != "cuda":
        raise ValueError(f"device {device!r} is not supported; use 'auto', 'cpu', 'cuda' or 'cuda:N'")
    if not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for but CUDA is not available here; use 'cpu'")
    count = torch.cuda.device_count()
    index = dev.index
    if index is None:
        if local_rank < count:
            index = local_rank
        elif count == 1:
            index = 0
        else:
            raise ValueError(f"local rank {local_rank} has no GPU of its own: {count} visible; "
                             "start at most one process per GPU")
    if index >= count:
        raise ValueError(f"device {device!r} does not exist: {count} CUDA device(s) visible")
    return torch.device("cuda", index)


def _export_submitit_environment() -> None:
    """Under a submitit job, export RANK/WORLD_SIZE/MASTER_* as torchrun would."""
    from submitit.helpers import TorchDistributedEnvironment

    env = TorchDistributedEnvironment()
    # GPUs are chosen by local rank (resolve_device); CUDA_VISIBLE_DEVICES is left as the scheduler set it.
    env.export(set_cuda_visible_devices=False, overwrite=True)


def _env_int(name: str) -> int:
    value = os.environ[name]
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from None


# NCCL settings every process gets unless its environment sets them: NVLink multicast (NVLS) off,
# as the GPU machines this project is run on require (it needs multicast support not every host has).
NCCL_DEFAULTS = {"NCCL_NVLS_ENABLE": "0"}


def set_nccl_defaults() -> None:
    """Put NCCL_DEFAULTS into the environment, keeping any value already there (the user's)."""
    for name, value in NCCL_DEFAULTS.items():
        os.environ.setdefault(name, value)


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group this process was launched into (no-op for a single process).

    ``device``: 'auto' | 'cpu' | 'cuda' | 'cuda:N'. The backend is NCCL for CUDA and gloo for CPU.
    NCCL_DEFAULTS are set first (NCCL reads them when the group first communicates).
    """
    set_nccl_defaults()
    if "RANK" not in os.environ and os.environ.get("SUBMITIT_EXECUTOR"):
        _export_submitit_environment()
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        rank, world_size = _env_int("RANK"), _env_int("WORLD_SIZE")
        local_rank = _env_int("LOCAL_RANK") if "LOCAL_RANK" in os.environ else rank
    else:
        rank, world_size, local_rank = 0, 1, 0
    if not 0 <= rank < world_size:
        raise ValueError(f"RANK={rank} is outside 0..WORLD_SIZE-1 (WORLD_SIZE={world_size})")

    dev = resolve_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    info = DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)
    if world_size == 1:
        return info

    missing = [k for k in ("MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise ValueError(f"WORLD_SIZE={world_size} but {' and '.join(missing)} not set; "
                         "launch with torchrun, launch.local or launch.submitit")
    if dist.is_initialized():
        raise RuntimeError("torch.distributed is already initialised in this process; call cleanup() first")
    backend = "nccl" if dev.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world_size,
                            device_id=dev if dev.type == "cuda" else None)
    logger.info("joined process group: rank %d of %d (local rank %d) on %s, backend %s, master %s:%s",
                rank, world_size, local_rank, dev, backend, os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"])
    return info


def cleanup(together: bool = False) -> None:
    """Leave the process group, if one was joined. ``together`` (every rank finished its last step):
    wait for the others first, so that no rank tears down its connections while another still writes
    its checkpoint; gloo once aborted a rank that left first (SIGABRT, "terminate called without an
    active exception"). A rank that failed leaves at once: the others may never come."""
    if dist.is_available() and dist.is_initialized():
        if together:
            dist.barrier()
        dist.destroy_process_group()


def _active() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if _active() else 0


def get_world_size() -> int:
    return dist.get_world_size() if _active() else 1


def all_reduce_mean(x: float | torch.Tensor) -> float | torch.Tensor:
    """Mean of ``x`` over all processes; a float gives a float, a tensor a new tensor (x is untouched)."""
    is_tensor = isinstance(x, torch.Tensor)
    if not _active() or get_world_size() == 1:
        return x.clone() if is_tensor else float(x)
    if is_tensor:
        t = x.detach().clone()
    else:
        device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
        t = torch.tensor(float(x), dtype=torch.float64, device=device)
    if not t.is_floating_point():
        t = t.double()
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    t /= get_world_size()
    return t if is_tensor else t.item()
