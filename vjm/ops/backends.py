"""The backend rule shared by every op of vjm.ops (the scan, the convolution, the fused direction).

Each op lists its backends fastest first, each with the reason it cannot run given tensors (None
when it can). "auto" takes the first that can run them; a backend asked for by name that cannot
run them is an error, never a silent fallback; an unknown name is an error that lists the known.

A leaf: it imports no other module of vjm.ops, so that every one of them can import it.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Callable, Mapping, NamedTuple

import torch

logger = logging.getLogger(__name__)

TRITON_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


class Backend(NamedTuple):
    fn: Callable[..., Any]
    unusable_for: Callable[..., str | None]  # (*tensors) -> why it cannot run them, or None


def usable_backends(backends: Mapping[str, Backend], *tensors: torch.Tensor) -> list[str]:
    """Names of the backends that can run on `tensors`, in the table's order (fastest first)."""
    return [name for name, backend in backends.items() if backend.unusable_for(*tensors) is None]


_announced: set[tuple[str, str, str]] = set()


def resolve_backend(op: str, backends: Mapping[str, Backend], requested: str, *tensors: torch.Tensor) -> str:
    """The name of the backend of `backends` that runs `op` on `tensors` when `requested` is asked for."""
    if requested == "auto":
        name = usable_backends(backends, *tensors)[0]
        device = tensors[0].device.type
        if (op, name, device) not in _announced:  # once per op, backend and device, not per call
            _announced.add((op, name, device))
            logger.info("%s: using the %s backend on %s", op, name, device)
        return name
    if requested not in backends:
        raise ValueError(f"{op}: unknown backend {requested!r}; choose 'auto' or one of {sorted(backends)}")
    reason = backends[requested].unusable_for(*tensors)
    if reason is not None:
        raise RuntimeError(
            f"{op}: backend {requested!r} was asked for but cannot run here: {reason}. "
            "Use backend='auto' to pick the fastest available one."
        )
    return requested


# --- When each kind of backend can run --------------------------------------------------------


def always_usable(*tensors: torch.Tensor) -> None:
    """The torch references run on any device and dtype."""
    return None


def interpreting() -> bool:
    """Whether Triton's interpreter is on (TRITON_INTERPRET=1, read when triton is imported): the
    kernels then run on CPU tensors, which is how the CPU tests exercise them."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def triton_import_error() -> str | None:
    """Why Triton cannot be used here, or None when it can."""
    try:
        import triton  # noqa: F401
        import triton.language  # noqa: F401
    except Exception as exc:  # ImportError, or a broken install that fails while importing
        return f"triton does not import ({type(exc).__name__}: {exc})"
    return None


def triton_unusable_for(*tensors: torch.Tensor) -> str | None:
    """Why vjm's Triton kernels cannot run on `tensors`, or None when they can. CUDA tensors only:
    "auto" never sends CPU tensors to the interpreter, which only the tests call directly."""
    for t in tensors:
        if not t.is_cuda:
            return "the Triton kernels run on CUDA tensors only"
        if t.dtype not in TRITON_DTYPES:
            return f"the Triton kernels take float32, bfloat16 or float16 inputs, not {t.dtype}"
    return triton_import_error()


def mamba_ssm_import_error() -> str | None:
    """Why mamba_ssm's scan kernel cannot be used here, or None when it can."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn  # noqa: F401
    except Exception as exc:  # ImportError, or an undefined symbol from a mismatched build
        return f"mamba_ssm does not import ({type(exc).__name__}: {exc})"
    return None


def mamba_ssm_unusable_for(*tensors: torch.Tensor) -> str | None:
    """Why mamba_ssm's kernels cannot run on `tensors`, or None when they can."""
    if not all(t.is_cuda for t in tensors):
        return "mamba_ssm's kernels run on CUDA tensors only"
    return mamba_ssm_import_error()
