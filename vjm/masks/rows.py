"""Row masks (VideoMamba): whole rows of patches are masked, matching the scan's row-major order.

``clip_row`` masks the same rows in every frame; ``frame_row`` draws the rows anew for each frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from vjm.masks.base import MaskGenerator, check_fraction
from vjm.masks.registry import register_mask
from vjm.masks.tube import masked_count, random_subsets


@dataclass(kw_only=True)
class _RowMask(MaskGenerator):
    ratio: float = 0.8

    def __post_init__(self) -> None:
        super().__post_init__()
        self.ratio = check_fraction("ratio", self.ratio, include_one=False)
        self.num_masked_rows = masked_count(self.ratio, self.grid[1], "rows")

    def _masked_rows(self, batch_size: int, generator: torch.Generator) -> Tensor:
        """Bool [B, T' or 1, H']: which rows are masked in each frame."""
        raise NotImplementedError

    def sample_dense(self, batch_size: int, generator: torch.Generator, shared: None = None) -> tuple[Tensor, Tensor]:
        frames, height, width = self.grid
        rows = self._masked_rows(batch_size, generator)
        target = rows[..., None].expand(batch_size, frames, height, width).reshape(batch_size, -1)
        return ~target, target


@register_mask("clip_row")
@dataclass(kw_only=True)
class ClipRowMask(_RowMask):
    """``ratio`` of the rows of patches are masked, the same rows in every frame."""

    def _masked_rows(self, batch_size: int, generator: torch.Generator) -> Tensor:
        rows = random_subsets(batch_size, self.grid[1], self.num_masked_rows, generator)
        return rows[:, None, :]


@register_mask("frame_row")
@dataclass(kw_only=True)
class FrameRowMask(_RowMask):
    """``ratio`` of the rows of patches are masked, drawn independently for each frame."""

    def _masked_rows(self, batch_size: int, generator: torch.Generator) -> Tensor:
        frames, height, _ = self.grid
        rows = random_subsets(batch_size * frames, height, self.num_masked_rows, generator)
        return rows.view(batch_size, frames, height)
