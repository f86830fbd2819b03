"""The global batch, as the processes of a run share it: each holds one contiguous block of rows.

The training sampler gives rank r the r-th block of every global batch (vjm.data.samplers), so
rank r's rows of any per-sample tensor are rows [r * n, (r + 1) * n) of the global one. These
helpers let a batch statistic or a random draw see the global batch, so that a loss does not
depend on how many processes the batch is spread over:

    gather_rows(tokens)                 # the global batch's rows, with gradients to each process's own
    draw_for_rows(rows, draw)           # a per-row random draw made for the global batch, this block of it

Without a process group (one process) both are the plain local operation.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.distributed as dist


def process_share() -> tuple[int, int]:
    """(this process's rank, number of processes); (0, 1) without a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class _GatherRows(torch.autograd.Function):
    """all_gather forward; backward: the sum over processes of the gathered rows' gradients, this
    process's block of it (an all-reduce: gloo has no reduce-scatter)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        rank, world = process_share()
        ctx.rows, ctx.rank = x.shape[0], rank
        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.rows:(ctx.rank + 1) * ctx.rows]


def gather_rows(x: torch.Tensor) -> torch.Tensor:
    """Every process's ``x`` concatenated along dim 0 in rank order (the global batch's rows).

    Differentiable: the backward sums, for each process's rows, the gradients every process's
    loss sends them. DDP then averages the processes' gradients, so a statistic of the gathered
    rows that every process adds to its loss gets exactly its one-process gradient. Every process
    must call it with the same shape, at the same point.
    """
    if process_share()[1] == 1:
        return x
    return _GatherRows.apply(x)


def draw_for_rows(rows: int, draw: Callable[[int], torch.Tensor]) -> torch.Tensor:
    """``draw(n)`` makes n per-row random values (from a stream all processes share); this draws
    them for the global batch's rows and returns this process's ``rows`` of them. A row's value is
    then the same whether its batch is spread over one process or many."""
    rank, world = process_share()
    if world == 1:
        return draw(rows)
    return draw(rows * world)[rank * rows:(rank + 1) * rows]
