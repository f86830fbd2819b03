"""The Mamba mixer's (E, batch x L) layout: views into it and the two projections around it.

Inside the mixer every E-wide activation is a (E, B L) matrix, seen by the kernels and modules
as a (B, E, L) view with time contiguous (vjm/models/mamba.py says why). `in_projection` and
`out_projection` are the mixer's first and last matmuls written as autograd nodes whose
gradients stay in that layout too: autograd's own backward of a transposed view would hand the
scans a (B L, E) gradient to copy, and the backward of splitting x and z would concatenate them
into a new tensor and copy it again, four E-wide copies per layer.

Both follow autocast: under it they run their matmuls in its dtype and keep the cast input for
the backward, as autocast's own matmul does.
"""

from __future__ import annotations

import torch

# Plain view ops rather than einops: these run a few hundred times per training step, and
# einops' parsing cost 60 ms of host time per V-JEPA step (docs/PERFORMANCE.md).


def token_rows(x: torch.Tensor) -> torch.Tensor:
    """(B, E, L) -> (B L, E): a view for the mixer's (E, B L) layout (a copy for any other)."""
    return x.transpose(1, 2).reshape(-1, x.shape[1])


def channel_view(x: torch.Tensor, batch: int) -> torch.Tensor:
    """(E, B L) -> the (B, E, L) view of it."""
    return x.unflatten(1, (batch, -1)).transpose(0, 1)


def channel_matrix(x: torch.Tensor) -> torch.Tensor:
    """(B, E, L) -> (E, B L): a view for the mixer's layout (a copy for any other)."""
    return x.transpose(0, 1).reshape(x.shape[1], -1)


def state_view(x: torch.Tensor, batch: int) -> torch.Tensor:
    """(B L, N) -> the (B, N, L) view of it (B or C of the scan)."""
    return x.unflatten(0, (batch, -1)).transpose(1, 2)


def compute_dtype(t: torch.Tensor) -> torch.dtype:
    """The dtype autocast would run a matmul of `t` in (t's own outside autocast)."""
    device = t.device.type
    if t.dtype in (torch.float32, torch.float16, torch.bfloat16) and torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return t.dtype


class InProjection(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tokens, weight, bias):
        rows = tokens.reshape(-1, tokens.shape[-1])
        dtype = compute_dtype(rows)
        rows, weight = rows.to(dtype), weight.to(dtype)
        xz = weight @ rows.t() if bias is None else torch.addmm(bias.to(dtype)[:, None], weight, rows.t())
        ctx.save_for_backward(rows, weight)
        ctx.shape, ctx.has_bias = tokens.shape, bias is not None
        return channel_view(xz, tokens.shape[0]).chunk(2, dim=1)

    @staticmethod
    def backward(ctx, dx, dz):
        rows, weight = ctx.saved_tensors
        dx, dz = (channel_matrix(g).to(rows.dtype) for g in (dx, dz))  # views in the mixer's layout
        w_x, w_z = weight.chunk(2)
        d_rows = torch.addmm(dx.t() @ w_x, dz.t(), w_z)
        d_weight = torch.empty_like(weight)
        torch.mm(dx, rows, out=d_weight[: dx.shape[0]])
        torch.mm(dz, rows, out=d_weight[dx.shape[0] :])
        d_bias = torch.cat([dx.sum(1), dz.sum(1)]) if ctx.has_bias else None
        return d_rows.view(ctx.shape), d_weight, d_bias


class OutProjection(torch.autograd.Function):
    @staticmethod
    def forward(ctx, y, weight, bias, scale):
        batch = y.shape[0]
        y = channel_matrix(y)
        dtype = compute_dtype(y)
        y, weight = y.to(dtype), (weight * scale if scale != 1 else weight).to(dtype)
        out = y.t() @ weight.t() if bias is None else torch.addmm(bias.to(dtype), y.t(), weight.t())
        ctx.save_for_backward(y, weight)
        ctx.scale, ctx.has_bias, ctx.batch = scale, bias is not None, batch
        return out.unflatten(0, (batch, -1))

    @staticmethod
    def backward(ctx, dout):
        y, weight = ctx.saved_tensors
        d_rows = dout.reshape(-1, dout.shape[-1]).to(y.dtype)
        dy = weight.t() @ d_rows.t()  # (E, B L): the layout the scans' backward reads in place
        d_weight = d_rows.t() @ y.t()
        if ctx.scale != 1:
            d_weight = d_weight * ctx.scale
        d_bias = d_rows.sum(0) if ctx.has_bias else None
        return channel_view(dy, ctx.batch), d_weight, d_bias, None


def in_projection(tokens: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None):
    """tokens (B, L, D) -> (x, z), each (B, E, L): the halves of weight @ tokens^T (+ bias), views
    of one (2E, B L) matrix; their gradients are read in the mixer's layout with no copy."""
    return InProjection.apply(tokens, weight, bias)


def out_projection(y: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                   scale: float = 1.0) -> torch.Tensor:
    """y (B, E, L) -> (B, L, D) = scale * y^T weight^T (+ bias); the gradient of y comes back as a
    view of an (E, B L) matrix."""
    return OutProjection.apply(y, weight, bias, scale)
