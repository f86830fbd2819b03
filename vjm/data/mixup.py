"""Mixup and CutMix of clips: timm's batch mixing, one weight and one box for every frame of a clip.

Each sample is mixed with its neighbour (samples 0 and 1, 2 and 3, ...; a sample's clips with the
neighbour's clips of the same index), not with the batch's reverse as in timm: a pair then never
straddles two processes, whose batches are consecutive blocks of the global batch, so a batch spread
over several processes is mixed exactly as one process mixes it. The weight and the box are drawn
as timm draws them, once per batch, from numpy's global stream, which every process of a run shares
(vjm.train.engine seeds them alike) and checkpoints save: a resumed run mixes as an uninterrupted one.

    mix = ClipMixup(num_classes=400, mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1)
    clips, targets = mix(clips, labels)     # targets: B x num_classes soft labels
"""

from __future__ import annotations

import numpy as np
import torch
from timm.data.mixup import cutmix_bbox_and_lam, one_hot

__all__ = ["ClipMixup", "neighbour_rows"]


def neighbour_rows(rows: int, clips_per_sample: int, device=None) -> torch.Tensor:
    """For each of ``rows`` clips (sample-major, ``clips_per_sample`` per sample), the row of the
    same clip of the neighbouring sample (0 <-> 1, 2 <-> 3, ...)."""
    row = torch.arange(rows, device=device)
    sample, clip = row // clips_per_sample, row % clips_per_sample
    return (sample ^ 1) * clips_per_sample + clip


class ClipMixup:
    """Each batch is mixed, with probability ``prob``: by Mixup (weight ~ Beta(mixup_alpha)) or CutMix
    (box area ~ Beta(cutmix_alpha)), CutMix with ``switch_prob`` when both are on; ``label_smoothing``
    is folded into the soft targets."""

    def __init__(self, num_classes: int, mixup_alpha: float = 0.8, cutmix_alpha: float = 1.0, prob: float = 1.0,
                 switch_prob: float = 0.5, label_smoothing: float = 0.1):
        if mixup_alpha <= 0 and cutmix_alpha <= 0:
            raise ValueError("ClipMixup needs mixup_alpha > 0 or cutmix_alpha > 0 (both off = no mixing)")
        self.num_classes, self.mixup_alpha, self.cutmix_alpha = num_classes, mixup_alpha, cutmix_alpha
        self.prob, self.switch_prob, self.label_smoothing = prob, switch_prob, label_smoothing

    def draw(self) -> tuple[float, bool]:
        """(weight of the clip itself, whether by CutMix), in timm's order of draws."""
        if np.random.rand() >= self.prob:
            return 1.0, False
        cutmix = self.cutmix_alpha > 0 and (self.mixup_alpha <= 0 or np.random.rand() < self.switch_prob)
        alpha = self.cutmix_alpha if cutmix else self.mixup_alpha
        return float(np.random.beta(alpha, alpha)), cutmix

    def __call__(self, clips: torch.Tensor, labels: torch.Tensor,
                 clips_per_sample: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """clips B x C x T x H x W, labels B (a sample's ``clips_per_sample`` clips next to each other,
        an even number of samples) -> (mixed clips, B x num_classes targets summing to 1)."""
        if clips.dim() != 5:
            raise ValueError(f"ClipMixup expects clips B x C x T x H x W, got {tuple(clips.shape)}")
        samples = clips.shape[0] // clips_per_sample
        if samples % 2 or samples * clips_per_sample != clips.shape[0]:
            raise ValueError(f"mixup/cutmix pairs each sample with its neighbour: the batch needs an even number of "
                             f"samples of {clips_per_sample} clip(s), got {clips.shape[0]} clips")
        partner = neighbour_rows(clips.shape[0], clips_per_sample, clips.device)
        weight, cutmix = self.draw()
        if weight == 1.0:
            mixed = clips
        elif cutmix:
            (top, bottom, left, right), weight = cutmix_bbox_and_lam(clips.shape, weight)
            mixed = clips.clone()
            mixed[..., top:bottom, left:right] = clips[partner][..., top:bottom, left:right]
        else:
            mixed = clips * weight + clips[partner] * (1.0 - weight)
        off = self.label_smoothing / self.num_classes
        own = one_hot(labels, self.num_classes, on_value=1.0 - self.label_smoothing + off, off_value=off)
        return mixed, own * weight + own[partner] * (1.0 - weight)
