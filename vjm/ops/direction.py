"""`scan_direction`: one scan direction of the Mamba mixer, from its conv input to its gated output.

    x, z: (B, E, L)   conv_weight: (E, K)   x_proj_weight: (dt_rank + 2N, E)   dt_proj_weight: (E, dt_rank)
    u = silu(causal conv1d(x))                         (conv.py; anti-causal when reverse)
    dt, B, C = split(u @ x_proj^T)                     (B L, dt_rank + 2N)
    delta = dt_proj @ dt^T                             (E, B L), dt_bias added inside the scan
    y = selective_scan(u, delta, A, B, C, D, z, dt_bias, delta_softplus=True, reverse)   A = -exp(A_log)

Backends, fastest first, chosen by the rule of backends.py:
  "triton"     one fused autograd node on vjm's Triton kernels that recomputes u and delta in the
               backward (direction_triton.py);
  "mamba_ssm"  the torch composition around mamba_ssm's scan kernel;
  "torch"      the torch composition around the torch scan: the reference (direction_torch.py).
"""

from __future__ import annotations

from functools import partial

import torch

from .backends import Backend, always_usable, mamba_ssm_unusable_for, resolve_backend, triton_unusable_for
from .direction_torch import scan_direction_torch
from .direction_triton import scan_direction_triton
from .scan_mamba_ssm import selective_scan_mamba_ssm

DIRECTION_BACKENDS: dict[str, Backend] = {
    "triton": Backend(scan_direction_triton, triton_unusable_for),
    "mamba_ssm": Backend(partial(scan_direction_torch, scan=selective_scan_mamba_ssm), mamba_ssm_unusable_for),
    "torch": Backend(scan_direction_torch, always_usable),
}


def resolve_direction_backend(requested: str, *tensors: torch.Tensor) -> str:
    """The backend that `scan_direction` runs for `requested` on tensors like these: what a
    MambaMixer with scan_backend=requested runs (bench/throughput.py labels its rows with it)."""
    return resolve_backend("scan_direction", DIRECTION_BACKENDS, requested, *tensors)


def scan_direction(x: torch.Tensor, z: torch.Tensor, conv_weight: torch.Tensor, conv_bias: torch.Tensor | None,
                   x_proj_weight: torch.Tensor, dt_proj_weight: torch.Tensor, A_log: torch.Tensor,
                   D: torch.Tensor, dt_bias: torch.Tensor, reverse: bool, dt_rank: int,
                   backend: str = "auto") -> torch.Tensor:
    """y (B, E, L); see the module docstring."""
    fn = DIRECTION_BACKENDS[resolve_direction_backend(backend, x, z)].fn
    return fn(x, z, conv_weight, conv_bias, x_proj_weight, dt_proj_weight, A_log, D, dt_bias, reverse, dt_rank)
