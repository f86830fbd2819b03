"""Random token masks (MAE; MAE-ST for video): each sample masks its own random set of tokens."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from vjm.masks.base import MaskGenerator, check_fraction
from vjm.masks.registry import register_mask
from vjm.masks.tube import masked_count, random_subsets


@register_mask("random")
@dataclass(kw_only=True)
class RandomMask(MaskGenerator):
    """``ratio`` of all T' x H' x W' tokens are masked (target), uniformly at random per sample.

    Every sample masks the same number of tokens, so nothing is dropped to equalise a batch. MAE
    uses 0.75 on images; on video this is MAE-ST's spacetime-agnostic masking (VideoMAE's tube
    masking is ``tube``).
    """

    ratio: float = 0.75

    def __post_init__(self) -> None:
        super().__post_init__()
        self.ratio = check_fraction("ratio", self.ratio, include_one=False)
        self.num_masked = masked_count(self.ratio, self.num_tokens, "tokens")

    def sample_dense(self, batch_size: int, generator: torch.Generator, shared: None = None) -> tuple[Tensor, Tensor]:
        target = random_subsets(batch_size, self.num_tokens, self.num_masked, generator)
        return ~target, target
