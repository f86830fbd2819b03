"""Random tube masks (VideoMAE): one random spatial mask repeated over every frame."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from vjm.masks.base import GridError, MaskGenerator, check_fraction
from vjm.masks.registry import register_mask


def masked_count(ratio: float, total: int, what: str) -> int:
    """round(ratio * total), refused when it would leave no context or no target."""
    count = round(ratio * total)
    if not 1 <= count <= total - 1:
        raise GridError(
            f"ratio={ratio:g} of {total} {what} masks {count}, which leaves no "
            f"{'target' if count < 1 else 'context'}; choose a ratio between {1 / total:.3g} and {1 - 1 / total:.3g}"
        )
    return count


def random_subsets(rows: int, total: int, count: int, generator: torch.Generator) -> Tensor:
    """``rows`` independent uniformly random subsets of size ``count`` of range(total), as bool [rows, total]."""
    order = torch.rand(rows, total, generator=generator).argsort(dim=1)
    chosen = torch.zeros(rows, total, dtype=torch.bool)
    chosen.scatter_(1, order[:, :count], True)
    return chosen


@register_mask("tube")
@dataclass(kw_only=True)
class TubeMask(MaskGenerator):
    """``ratio`` of the spatial positions are masked (target) in every frame; VideoMAE uses 0.9.

    On an image (T' = 1) this is MAE's random masking.
    """

    ratio: float = 0.9

    def __post_init__(self) -> None:
        super().__post_init__()
        self.ratio = check_fraction("ratio", self.ratio, include_one=False)
        _, height, width = self.grid
        self.num_masked = masked_count(self.ratio, height * width, "spatial positions")

    def sample_dense(self, batch_size: int, generator: torch.Generator, shared: None = None) -> tuple[Tensor, Tensor]:
        frames, height, width = self.grid
        spatial = random_subsets(batch_size, height * width, self.num_masked, generator)
        target = spatial[:, None, :].expand(batch_size, frames, height * width).reshape(batch_size, -1)
        return ~target, target

