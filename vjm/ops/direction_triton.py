"""One scan direction of the Mamba mixer (see direction.py) as a single autograd node on the
Triton kernels: the same operator as `scan_direction_torch` (direction_torch.py), with
A = -exp(A_log) taken inside the kernels.

Like mamba_ssm's `mamba_inner_fn`, the node saves only its inputs, the small (B L, dt_rank + 2N)
projection and the scan's chunk states; the backward recomputes u and delta (a convolution and
a rank-dt_rank matmul), instead of keeping two E-wide activations per direction alive from the
forward to the backward. Every activation stays in the mixer's (E, B L) layout (see
vjm/models/mamba.py), which the kernels read in place.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import conv_triton, scan_triton
from .channel_major import channel_matrix, channel_view, compute_dtype, state_view, token_rows
from .direction_torch import dt_and_delta


def states_fp32(x_dbl: torch.Tensor, dt_rank: int, batch: int):
    """B and C as fp32 (batch, N, L) views of one copy of the projection's last 2N columns: one
    cast instead of a copy of each, in a layout the kernels read in place (see scan_triton)."""
    B, C = x_dbl[:, dt_rank:].float().chunk(2, dim=1)
    return state_view(B, batch), state_view(C, batch)


class ScanDirectionTriton(torch.autograd.Function):
    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda")
    def forward(ctx, x, z, conv_weight, conv_bias, x_proj_weight, dt_proj_weight, A_log, D, dt_bias, reverse,
                dt_rank):
        x, conv_weight, conv_bias = conv_triton.prepare(x, conv_weight, conv_bias)
        u = conv_triton.conv_forward(x, conv_weight, conv_bias, reverse)
        # The projection weights in the matmuls' dtype, cast once and kept for the backward, where
        # autocast would cast them again for each of its three matmuls.
        dtype = compute_dtype(u)
        x_proj_weight, dt_proj_weight = x_proj_weight.to(dtype), dt_proj_weight.to(dtype)
        x_dbl = F.linear(token_rows(u), x_proj_weight)
        _, delta = dt_and_delta(x_dbl, dt_proj_weight, dt_rank, x.shape[0])
        B, C = states_fp32(x_dbl, dt_rank, x.shape[0])
        u, delta, A_log, B, C, D, z, dt_bias = scan_triton.prepare(u, delta, A_log, B, C, D, z, dt_bias)
        training = any(ctx.needs_input_grad)
        y, states = scan_triton.scan_forward(u, delta, A_log, B, C, D, z, dt_bias, True, reverse, training,
                                             a_log=True)
        if training:  # u and delta are recomputed, B and C are views of x_dbl
            ctx.save_for_backward(x, z, conv_weight, conv_bias, x_proj_weight, dt_proj_weight,
                                  A_log, D, dt_bias, x_dbl, states)
            ctx.reverse, ctx.dt_rank, ctx.chunk = bool(reverse), dt_rank, scan_triton.CHUNK
        return y

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, dy):
        (x, z, conv_weight, conv_bias, x_proj_weight, dt_proj_weight,
         A_log, D, dt_bias, x_dbl, states) = ctx.saved_tensors
        batch = x.shape[0]
        u = conv_triton.conv_forward(x, conv_weight, conv_bias, ctx.reverse)  # recomputed
        dt, delta = dt_and_delta(x_dbl, dt_proj_weight, ctx.dt_rank, batch)  # delta recomputed
        B, C = states_fp32(x_dbl, ctx.dt_rank, batch)
        inputs = scan_triton.prepare(u, delta, A_log, B, C, D, z, dt_bias)
        du, ddelta, dA_log, dB, dC, dD, dz, dbias = scan_triton.scan_backward(
            *inputs, states, ctx.chunk, dy, True, ctx.reverse, a_log=True)

        # Matmuls in the forward's dtype (the saved weights are cast already); autograd casts each
        # gradient to its input's dtype.
        ddelta_rows = token_rows(ddelta)  # (B L, E), a view of the (E, B L) gradient
        d_x_dbl = torch.cat([ddelta_rows @ dt_proj_weight, token_rows(dB), token_rows(dC)], dim=1).to(x_dbl.dtype)
        d_dt_proj = ddelta_rows.t() @ dt
        # du += d_x_dbl @ x_proj, written as (E, B L) so that it lands in du's layout.
        du = torch.addmm(channel_matrix(du), x_proj_weight.t(), d_x_dbl.t())
        d_x_proj = d_x_dbl.t() @ token_rows(u)
        dx, d_conv_weight, d_conv_bias = conv_triton.conv_backward(
            x, conv_weight, conv_bias, ctx.reverse, channel_view(du, batch))
        return dx, dz, d_conv_weight, d_conv_bias, d_x_proj, d_dt_proj, dA_log, dD, dbias, None, None


def scan_direction_triton(x, z, conv_weight, conv_bias, x_proj_weight, dt_proj_weight, A_log, D, dt_bias,
                          reverse: bool, dt_rank: int) -> torch.Tensor:
    """y (B, E, L) in x's layout for conv input x and gate z, both (B, E, L), and A = -exp(A_log);
    see the module docstring."""
    return ScanDirectionTriton.apply(x, z, conv_weight, conv_bias, x_proj_weight, dt_proj_weight,
                                     A_log, D, dt_bias, reverse, dt_rank)
