"""`selective_scan`: one function, several backends.

Semantics and layouts follow mamba_ssm's `selective_scan_fn`, plus `reverse`:

    u, delta, z: (batch, E, L)   A: (E, N)   B, C: (batch, N, L)   D, delta_bias: (E,)
    dt  = softplus(delta + delta_bias)            (softplus only when delta_softplus)
    h_t = exp(dt_t A) h_{t-1} + dt_t B_t u_t      (fp32 state; from the end when reverse)
    y_t = C_t . h_t + D u_t,   then y * silu(z)   (output in u's dtype)

Backends: "torch" (scan_torch.py, the reference, always available), "triton" (scan_triton.py,
vjm's kernels, CUDA tensors, when triton imports), "mamba_ssm" (scan_mamba_ssm.py, its CUDA
kernels, when that package imports). Which one runs follows the rule of backends.py.
"""

from __future__ import annotations

import torch

from .backends import Backend, always_usable, mamba_ssm_unusable_for, resolve_backend, triton_unusable_for
from .scan_mamba_ssm import selective_scan_mamba_ssm
from .scan_torch import check_scan_shapes, selective_scan_torch
from .scan_triton import selective_scan_triton

# Fastest first: "auto" takes the first usable one (docs/PERFORMANCE.md has the measurements).
SCAN_BACKENDS: dict[str, Backend] = {
    "triton": Backend(selective_scan_triton, triton_unusable_for),
    "mamba_ssm": Backend(selective_scan_mamba_ssm, mamba_ssm_unusable_for),
    "torch": Backend(selective_scan_torch, always_usable),
}


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
    check_scan_shapes(u, delta, A, B, C, D, z, delta_bias)
    fn = SCAN_BACKENDS[resolve_backend("selective_scan", SCAN_BACKENDS, backend, u)].fn
    return fn(u, delta, A, B, C, D=D, z=z, delta_bias=delta_bias,
              delta_softplus=delta_softplus, reverse=reverse)
