"""Fixed 3D sin-cos positions, computed for whatever token grid the input has."""

from __future__ import annotations

import functools
import math

import torch


def sincos_1d(dim: int, positions: torch.Tensor) -> torch.Tensor:
    """(len(positions), dim) sin-cos embedding; dim must be even."""
    freqs = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2))
    angles = positions.double()[:, None] * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


@functools.lru_cache(maxsize=64)
def _sincos_3d_cpu(dim: int, grid: tuple[int, int, int]) -> torch.Tensor:
    # Each axis gets the same share of channels (V-JEPA's "uniform power"), cut to `dim`.
    axis_dim = 2 * math.ceil(dim / 6)
    t, h, w = torch.meshgrid(*(torch.arange(n) for n in grid), indexing="ij")
    parts = [sincos_1d(axis_dim, axis.reshape(-1)) for axis in (t, h, w)]
    return torch.cat(parts, dim=1)[:, :dim].float()


@functools.lru_cache(maxsize=64)
def _sincos_3d_on(dim: int, grid: tuple[int, int, int], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    return _sincos_3d_cpu(dim, grid).to(device=device, dtype=dtype)


def sincos_3d(dim: int, grid: tuple[int, int, int], device=None, dtype=torch.float32) -> torch.Tensor:
    """(T'*H'*W', dim) positions in raster order (time, then rows, then columns).

    One tensor per (dim, grid, device, dtype), shared by every call: do not modify it in place.
    A fresh copy to the GPU at each forward would be a copy from pageable memory, which makes
    the host wait until the GPU has run everything queued before it."""
    return _sincos_3d_on(dim, tuple(int(n) for n in grid), torch.device(device or "cpu"), dtype)
