"""`selective_scan`: one function, several backends.

Semantics and layouts follow mamba_ssm's `selective_scan_fn`, plus `reverse`:

    u, delta, z: (batch, E, L)   A: (E, N)   B, C: (batch, N, L)   D, delta_bias: (E,)
    dt  = softplus(delta + delta_bias)            (softplus only when delta_softplus)
    h_t = exp(dt_t A) h_{t-1} + dt_t B_t u_t      (fp32 state; from the end when reverse)
    y_t = C_t . h_t + D u_t,   then y * silu(z)   (output in u's dtype)

Backends: "torch" (the reference, always available), "triton" (vjm's kernels, CUDA tensors,
when triton imports), "mamba_ssm" (its CUDA kernels, when that package imports). "auto" picks
the fastest one that can run the given tensors. A backend asked
for by name that cannot run is an error, never a silent fallback.
"""

from __future__ import annotations

import logging
from typing import Callable, NamedTuple

import torch

from . import scan_mamba_ssm, scan_triton
from .scan_torch import selective_scan_torch

logger = logging.getLogger(__name__)


class Backend(NamedTuple):
    fn: Callable[..., torch.Tensor]
    unusable_for: Callable[[torch.Tensor], str | None]  # reason it cannot run, or None


# Fastest first: "auto" takes the first usable one (docs/PERFORMANCE.md has the measurements).
BACKENDS: dict[str, Backend] = {
    "triton": Backend(scan_triton.selective_scan_triton, scan_triton.usable_for),
    "mamba_ssm": Backend(scan_mamba_ssm.selective_scan_mamba_ssm, scan_mamba_ssm.usable_for),
    "torch": Backend(selective_scan_torch, lambda u: None),
}
_announced: set[tuple[str, str]] = set()


def available_backends(u: torch.Tensor) -> list[str]:
    """Names of the backends that can scan tensors like `u`, fastest first."""
    return [name for name, backend in BACKENDS.items() if backend.unusable_for(u) is None]


def resolve_backend(backend: str, u: torch.Tensor) -> str:
    if backend == "auto":
        name = available_backends(u)[0]
        if (name, u.device.type) not in _announced:
            _announced.add((name, u.device.type))
            logger.info("selective scan: using the %s backend on %s", name, u.device.type)
        return name
    if backend not in BACKENDS:
        raise ValueError(
            f"selective_scan: unknown backend {backend!r}; choose 'auto' or one of {sorted(BACKENDS)}"
        )
    reason = BACKENDS[backend].unusable_for(u)
    if reason is not None:
        raise RuntimeError(
            f"selective_scan: backend {backend!r} was asked for but cannot run here: {reason}. "
            "Use backend='auto' to pick the fastest available one."
        )
    return backend


def _check_shapes(u, delta, A, B, C, D, z, delta_bias) -> None:
    if u.dim() != 3:
        raise ValueError(f"selective_scan: u must be (batch, E, L), got shape {tuple(u.shape)}")
    batch, dim, length = u.shape
    expected = {
        "delta": (delta, (batch, dim, length)),
        "A": (A, (dim, None)),
        "B": (B, (batch, None, length)),
        "C": (C, (batch, None, length)),
        "D": (D, (dim,)),
        "z": (z, (batch, dim, length)),
        "delta_bias": (delta_bias, (dim,)),
    }
    state = A.shape[-1] if A.dim() == 2 else None
    for name, (tensor, shape) in expected.items():
        if tensor is None:
            continue
        shape = tuple(state if s is None else s for s in shape)
        if tuple(tensor.shape) != shape:
            raise ValueError(
                f"selective_scan: {name} must have shape {shape} (from u {tuple(u.shape)} and "
                f"A {tuple(A.shape)}), got {tuple(tensor.shape)}"
            )
        if tensor.device != u.device:
            raise ValueError(f"selective_scan: {name} is on {tensor.device} but u is on {u.device}")


def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    reverse: bool = False,
    backend: str = "auto",
) -> torch.Tensor:
    """Selective state-space scan; see the module docstring for the exact semantics."""
    _check_shapes(u, delta, A, B, C, D, z, delta_bias)
    fn = BACKENDS[resolve_backend(backend, u)].fn
    return fn(u, delta, A, B, C, D=D, z=z, delta_bias=delta_bias,
              delta_softplus=delta_softplus, reverse=reverse)
