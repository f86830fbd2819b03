"""One scan direction of the Mamba mixer as a composition of torch ops: the reference that defines
the fused direction (semantics in direction.py).

The x and dt projections are written here once, for the reference and for the fused Triton node
(direction_triton.py), which applies the same matmuls to the same (E, B L) layout.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .channel_major import channel_view, state_view, token_rows
from .conv_torch import causal_conv1d_silu_torch
from .scan_torch import selective_scan_torch


def project(u: torch.Tensor, x_proj_weight, dt_proj_weight, dt_rank: int):
    """(x_dbl, delta, B, C) from the convolved activations u; B and C are views of x_dbl."""
    batch = u.shape[0]
    x_dbl = F.linear(token_rows(u), x_proj_weight)
    _, delta = dt_and_delta(x_dbl, dt_proj_weight, dt_rank, batch)
    B, C = x_dbl[:, dt_rank:].chunk(2, dim=1)
    return x_dbl, delta, state_view(B, batch), state_view(C, batch)


def dt_and_delta(x_dbl: torch.Tensor, dt_proj_weight, dt_rank: int, batch: int):
    """(dt, delta): the projection's first dt_rank columns (a view) and dt_proj @ dt^T as (B, E, L)."""
    dt = x_dbl[:, :dt_rank]
    return dt, channel_view(dt_proj_weight @ dt.t(), batch)


def scan_direction_torch(x, z, conv_weight, conv_bias, x_proj_weight, dt_proj_weight, A_log, D, dt_bias,
                         reverse: bool, dt_rank: int, scan=selective_scan_torch) -> torch.Tensor:
    """y (B, E, L) for conv input x and gate z, both (B, E, L), and A = -exp(A_log) in A_log's
    dtype. `scan` is the selective scan it composes with: the torch reference unless a dispatcher
    hands it another backend's scan (direction.py's "mamba_ssm")."""
    A = -torch.exp(A_log)
    u = causal_conv1d_silu_torch(x, conv_weight, conv_bias, reverse)
    _, delta, B, C = project(u, x_proj_weight, dt_proj_weight, dt_rank)
    return scan(u, delta, A, B, C, D=D, z=z, delta_bias=dt_bias, delta_softplus=True, reverse=reverse)
