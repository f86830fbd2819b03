"""3D multi-block masks (V-JEPA): the target is a union of spatio-temporal boxes, the context the rest."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence, Union

import torch
from torch import Tensor

from vjm.masks.base import GridError, MaskGenerator, check_fraction, check_int, check_range
from vjm.masks.registry import register_mask

Range = Union[float, Sequence[float]]

# Redraws allowed for a sample whose blocks happened to cover every context token.
_MAX_ATTEMPTS = 100
# Guards int() against 0.29 * 100 == 28.999999999999996.
_EPS = 1e-9


def _lerp(bounds: tuple[float, float], u: float) -> float:
    return bounds[0] + u * (bounds[1] - bounds[0])


def _box_union(starts: Tensor, size: tuple[int, int, int], grid: tuple[int, int, int]) -> Tensor:
    """Cover of boxes of ``size`` at ``starts`` [B, num_blocks, 3] as a bool tensor [B, T', H', W']."""
    inside = []
    for axis, (extent, length) in enumerate(zip(size, grid)):
        first = starts[..., axis, None]  # [B, num_blocks, 1]
        position = torch.arange(length)
        inside.append((position >= first) & (position < first + extent))  # [B, num_blocks, length]
    in_t, in_h, in_w = inside
    boxes = in_t[..., :, None, None] & in_h[..., None, :, None] & in_w[..., None, None, :]
    return boxes.any(dim=1)


@register_mask("multiblock")
@dataclass(kw_only=True)
class MultiBlockMask(MaskGenerator):
    """The union of ``num_blocks`` boxes is the target; the context is the complement.

    Each box spans ``temporal_scale`` of the frames and ``spatial_scale`` of a frame's area with
    height / width = ``aspect_ratio``; a range [min, max] is sampled uniformly once per batch
    (one box shape per batch, as V-JEPA, so that samples hold similar token counts), and each
    box is placed uniformly at random. V-JEPA's pair: short range ``num_blocks=8,
    spatial_scale=0.15`` and long range ``num_blocks=2, spatial_scale=0.7``, both with
    ``temporal_scale=1.0`` and ``aspect_ratio=[0.75, 1.5]``.

    ``max_temporal_keep`` < 1 restricts the context to the first frames (at least one): the
    later frames all become target, so the predictor must predict the future. ``max_keep``
    caps the number of context tokens per sample.
    """

    num_blocks: int = 8
    spatial_scale: Range = (0.15, 0.15)
    temporal_scale: Range = (1.0, 1.0)
    aspect_ratio: Range = (0.75, 1.5)
    max_temporal_keep: float = 1.0
    max_keep: Optional[int] = None

    def __post_init__(self) -> None:
        super().__post_init__()
        self.num_blocks = check_int("num_blocks", self.num_blocks, minimum=1)
        self.spatial_scale = check_range("spatial_scale", self.spatial_scale, upper=1.0)
        self.temporal_scale = check_range("temporal_scale", self.temporal_scale, upper=1.0)
        self.aspect_ratio = check_range("aspect_ratio", self.aspect_ratio, upper=None)
        self.max_temporal_keep = check_fraction("max_temporal_keep", self.max_temporal_keep, include_one=True)
        if self.max_keep is not None:
            self.max_keep = check_int("max_keep", self.max_keep, minimum=1)

        frames, height, width = self.grid
        self.context_frames = max(1, int(frames * self.max_temporal_keep + _EPS))
        # Box height grows and width shrinks with the aspect ratio, so the smallest boxes cover
        # the whole grid only if these extremes do; then no sample could keep any context.
        t, h, _ = self.block_shape(self.temporal_scale[0], self.spatial_scale[0], self.aspect_ratio[0])
        _, _, w = self.block_shape(self.temporal_scale[0], self.spatial_scale[0], self.aspect_ratio[1])
        if (t, h, w) == self.grid:
            raise GridError(
                f"every block covers the whole token grid {self.grid} (spatial_scale={list(self.spatial_scale)}, "
                f"temporal_scale={list(self.temporal_scale)}), so no context token would remain; "
                "lower spatial_scale or temporal_scale"
            )

    def block_shape(self, temporal_scale: float, spatial_scale: float, aspect_ratio: float) -> tuple[int, int, int]:
        """The (t, h, w) extent of a box in tokens, each at least 1 and at most the grid."""
        frames, height, width = self.grid
        t = min(frames, max(1, int(frames * temporal_scale + _EPS)))
        area = max(1, int(height * width * spatial_scale + _EPS))
        h = min(height, max(1, round(math.sqrt(area * aspect_ratio))))
        w = min(width, max(1, round(math.sqrt(area / aspect_ratio))))
        return t, h, w

    def max_context_tokens(self) -> Optional[int]:
        return self.max_keep

    def draw_shared(self, generator: torch.Generator) -> tuple[int, int, int]:
        """The batch's box shape (t, h, w)."""
        u_time, u_space, u_aspect = torch.rand(3, generator=generator).tolist()
        return self.block_shape(
            _lerp(self.temporal_scale, u_time), _lerp(self.spatial_scale, u_space), _lerp(self.aspect_ratio, u_aspect)
        )

    def sample_dense(self, batch_size: int, generator: torch.Generator,
                     shared: Optional[tuple[int, int, int]] = None) -> tuple[Tensor, Tensor]:
        size = self.draw_shared(generator) if shared is None else shared
        context = torch.zeros(batch_size, *self.grid, dtype=torch.bool)
        pending = torch.arange(batch_size)
        for _ in range(_MAX_ATTEMPTS):
            starts = torch.stack(
                [
                    torch.randint(length - extent + 1, (len(pending), self.num_blocks), generator=generator)
                    for length, extent in zip(self.grid, size)
                ],
                dim=-1,
            )
            drawn = ~_box_union(starts, size, self.grid)
            drawn[:, self.context_frames :] = False  # later frames are only ever predicted
            context[pending] = drawn
            pending = pending[~drawn.flatten(1).any(dim=1)]
            if len(pending) == 0:
                break
        else:
            raise ValueError(
                f"multiblock mask on grid {self.grid}: blocks of {size} tokens (t, h, w) x {self.num_blocks} "
                f"covered every context token in {_MAX_ATTEMPTS} draws in a row; lower num_blocks, "
                "spatial_scale or temporal_scale, or raise max_temporal_keep"
            )
        context = context.flatten(1)
        return context, ~context

