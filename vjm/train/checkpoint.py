"""Checkpoints: written atomically, read without executing pickled code.

A checkpoint is a dict of tensors and plain Python values:

    {"format": FORMAT, "config": resolved config dict, "objective": its name, "step": int,
     "epoch": int, "models": {child name: state_dict, ...} (the objective's checkpoint_modules),
     "optimizer": ..., "ranks": [per-rank RNG state and counters], "data": ..., "masks": ...}

`torch.load(weights_only=True)` reads it, so a checkpoint from an untrusted source cannot run code.
Checkpoints of the first format (before objectives were plugins) are upgraded as they are read.
"""

from __future__ import annotations

import copy
import errno
import glob
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger(__name__)

FORMAT = "vjm-checkpoint-v2"
FORMAT_V1 = "vjm-checkpoint-v1"


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write `state` to `path` atomically: a crash mid-write leaves the previous file intact.

    The bytes go to a temporary file beside `path` (``.NAME.tmp-<pid>``), are flushed to the disk,
    then renamed over `path`. The temporary file is removed when the write fails, and those left by
    processes that died mid-write are removed first. A full disk raises :class:`NoSpaceError`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(path)
    tmp = temp_path(path, os.getpid())
    try:
        with open(tmp, "wb") as f:
            torch.save({"format": FORMAT, **state}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:  # KeyboardInterrupt too: never leave a partial file behind
        tmp.unlink(missing_ok=True)
        if is_disk_full(exc):
            raise NoSpaceError(path, state_bytes(state)) from exc
        raise
    sync_directory(path.parent)
    return path


def copy_checkpoint(source: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Copy a written checkpoint to `path`, atomically and cleaning up as save_checkpoint does."""
    source, path = Path(source), Path(path)
    remove_stale_temp_files(path)
    tmp = temp_path(path, os.getpid())
    try:
        shutil.copyfile(source, tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if is_disk_full(exc):
            raise NoSpaceError(path, source.stat().st_size) from exc
        raise
    return path


class NoSpaceError(OSError):
    """The disk filled up while a checkpoint was written; the previous checkpoint is intact."""

    def __init__(self, path: Path, needed_bytes: int):
        free = shutil.disk_usage(path.parent).free
        super().__init__(errno.ENOSPC, f"no space left on device (needed about {needed_bytes / 2**20:.0f} MB at "
                                       f"{path}); {free / 2**20:.0f} MB free there. The previous checkpoint is "
                                       "intact: free some space or move run.folder, then resume")


def temp_path(path: Path, pid: int) -> Path:
    return path.with_name(f".{path.name}.tmp-{pid}")


def remove_stale_temp_files(path: str | os.PathLike) -> list[Path]:
    """Remove the temporary files of `path` whose writer process is gone (killed mid-write); returns them."""
    path = Path(path)
    removed = []
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.tmp-*"):
        pid = tmp.name.rsplit("-", 1)[1]
        if pid.isdigit() and not process_alive(int(pid)):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    if removed:
        logger.info("removed %d temporary file(s) left by an interrupted checkpoint write: %s",
                    len(removed), ", ".join(str(p) for p in removed))
    return removed


def process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def is_disk_full(exc: BaseException) -> bool:
    """ENOSPC, or torch's zip writer failing mid-file (it reports a full disk as 'unexpected pos')."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("unexpected pos" in text or "file write failed" in text)


def state_bytes(state: Any) -> int:
    """Bytes of the tensors in a nested state (what a checkpoint of it needs on disk, roughly)."""
    if isinstance(state, torch.Tensor):
        return state.numel() * state.element_size()
    if isinstance(state, dict):
        return sum(state_bytes(v) for v in state.values())
    if isinstance(state, (list, tuple)):
        return sum(state_bytes(v) for v in state)
    return 0


def sync_directory(folder: Path) -> None:
    """Make a rename in `folder` durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu", *,
                    mmap: bool = False) -> dict[str, Any]:
    """The checkpoint's state, upgraded to today's format; ``mmap`` maps the tensors instead of reading
    them (cheap when only the config or step is needed)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist; pass the path of a .pt file written by vjm")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as exc:
        raise ValueError(f"checkpoint {path} could not be read safely ({type(exc).__name__}: {exc})") from exc
    found = state.get("format") if isinstance(state, dict) else type(state).__name__
    if found == FORMAT_V1:
        return upgrade_v1(state)
    if found != FORMAT:
        raise ValueError(f"{path} is not a vjm checkpoint (format {found!r}, expected {FORMAT!r})")
    return state


def upgrade_v1_config(config: dict[str, Any]) -> dict[str, Any]:
    """A first-format config dict in today's layout: V-JEPA's predictor and EMA moved into its
    objective section, its context VICReg terms into ``regularizers``."""
    config = copy.deepcopy(config)
    objective = config.setdefault("objective", {"name": "vjepa"})
    if "predictor" in config:
        objective["predictor"] = config.pop("predictor")
    if "ema_momentum" in config.get("optim", {}):
        objective["ema_momentum"] = config["optim"].pop("ema_momentum")
    var_weight = objective.pop("context_var_weight", 0.0)
    cov_weight = objective.pop("context_cov_weight", 0.0)
    if var_weight or cov_weight:
        config.setdefault("regularizers", []).append(
            {"kind": "vicreg", "apply_to": "context", "var_weight": var_weight, "cov_weight": cov_weight})
    return config


def upgrade_v1(state: dict[str, Any]) -> dict[str, Any]:
    """A first-format checkpoint (all V-JEPA) in today's format; the weights are unchanged."""
    state = {**state, "format": FORMAT, "config": upgrade_v1_config(state["config"])}
    state.setdefault("objective", state["config"]["objective"].get("name", "vjepa"))
    return state
