"""ARM's prediction units: clusters of k x k neighbouring patches, and tokens regrouped by cluster.

A cluster is one tubelet slice of k x k patches. Clusters are ordered (t, cluster row, cluster
column) and the patches inside a cluster row-major, so for an image (T' = 1) the order is ARM's:
row-first, forward, cluster by cluster.

    clusters = to_clusters(tokens, grid, k)        # (B, T' H' W', ...) -> (B, n, k * k, ...)
    tokens = from_clusters(clusters, grid, k)      # and back, exactly

Tokens (and anything per token: pixels, positions) come in raster order (t, h, w), as everywhere
else in vjm; these two functions are the only place that knows the cluster order.
"""

from __future__ import annotations

import torch
from einops import rearrange

_TO = "b (t hc kh wc kw) ... -> b (t hc wc) (kh kw) ..."
_FROM = "b (t hc wc) (kh kw) ... -> b (t hc kh wc kw) ..."


def cluster_grid(grid: tuple[int, int, int], k: int) -> tuple[int, int, int]:
    """(T', H' / k, W' / k): clusters along time, rows and columns; a ValueError when k does not divide."""
    t, h, w = grid
    if k < 1:
        raise ValueError(f"the cluster size must be at least 1 patch, got {k}")
    if h % k or w % k:
        raise ValueError(f"a token grid of {h} x {w} patches (H' x W') does not split into clusters of {k} x {k} "
                         f"patches; choose a cluster size that divides both, or a crop of a multiple of {k} patches")
    return t, h // k, w // k


def num_clusters(grid: tuple[int, int, int], k: int) -> int:
    t, hc, wc = cluster_grid(grid, k)
    return t * hc * wc


def to_clusters(tokens: torch.Tensor, grid: tuple[int, int, int], k: int) -> torch.Tensor:
    """(B, T' H' W', ...) in raster order -> (B, clusters, k * k, ...) in cluster order."""
    t, hc, wc = cluster_grid(grid, k)
    if tokens.shape[1] != t * hc * wc * k * k:
        raise ValueError(f"to_clusters: {tokens.shape[1]} tokens for a grid {tuple(grid)} of "
                         f"{t * hc * wc * k * k}")
    return rearrange(tokens, _TO, t=t, hc=hc, kh=k, wc=wc, kw=k)


def from_clusters(clusters: torch.Tensor, grid: tuple[int, int, int], k: int) -> torch.Tensor:
    """The inverse of to_clusters: (B, clusters, k * k, ...) -> (B, T' H' W', ...) in raster order."""
    t, hc, wc = cluster_grid(grid, k)
    return rearrange(clusters, _FROM, t=t, hc=hc, kh=k, wc=wc, kw=k)
