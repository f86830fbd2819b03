"""Memory layouts that the Triton kernels read in place.

The kernels take (batch, E, L) tensors with time contiguous and any batch and channel strides,
which covers both the plain contiguous layout and MambaMixer's (E, batch x L) one, where every
tensor comes straight out of a matmul. These helpers copy only what is in neither.
"""

from __future__ import annotations

import torch


def time_contiguous(t: torch.Tensor) -> torch.Tensor:
    """t itself when time is contiguous and it has no gaps between its elements, else a copy."""
    expected = 1
    for stride, size in sorted((stride, size) for size, stride in zip(t.shape, t.stride()) if size > 1):
        if stride != expected:
            return t.contiguous()
        expected *= size
    return t if t.stride(-1) == 1 or t.shape[-1] == 1 else t.contiguous()


def in_layout_of(t: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | None:
    """t with the strides of `like` (t itself when it has them already, else a copy)."""
    if t is None or all(a == b for a, b, size in zip(t.stride(), like.stride(), like.shape) if size > 1):
        return t
    return torch.empty_like(like, dtype=t.dtype).copy_(t)
