"""Mixup and CutMix of clips: timm's batch mixing, one weight and one box for every frame of a clip.

timm's ``Mixup`` mixes images B x C x H x W (its CutMix box indexes the last two dimensions), so a
clip's frames are folded into the channels for it: every frame gets the same box, and a moving
object is cut by the same window all through the clip.

    mix = ClipMixup(num_classes=400, mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1)
    clips, targets = mix(clips, labels)     # targets: B x num_classes soft labels
"""

from __future__ import annotations

import torch
from einops import rearrange
from timm.data import Mixup

__all__ = ["ClipMixup"]


class ClipMixup:
    """Each batch is mixed with its reverse, with probability ``prob``: by Mixup (weight ~
    Beta(mixup_alpha)) or CutMix (box area ~ Beta(cutmix_alpha)), CutMix with ``switch_prob`` when both
    are on; ``label_smoothing`` is folded into the soft targets. Randomness is numpy's global stream,
    which checkpoints save, so a resumed run mixes as an uninterrupted one."""

    def __init__(self, num_classes: int, mixup_alpha: float = 0.8, cutmix_alpha: float = 1.0, prob: float = 1.0,
                 switch_prob: float = 0.5, label_smoothing: float = 0.1):
        if mixup_alpha <= 0 and cutmix_alpha <= 0:
            raise ValueError("ClipMixup needs mixup_alpha > 0 or cutmix_alpha > 0 (both off = no mixing)")
        self.mixup = Mixup(mixup_alpha=mixup_alpha, cutmix_alpha=cutmix_alpha, prob=prob, switch_prob=switch_prob,
                           mode="batch", label_smoothing=label_smoothing, num_classes=num_classes)

    def __call__(self, clips: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """clips B x C x T x H x W (B even), labels B -> (mixed clips, B x num_classes targets summing to 1)."""
        if clips.dim() != 5:
            raise ValueError(f"ClipMixup expects clips B x C x T x H x W, got {tuple(clips.shape)}")
        if clips.shape[0] % 2:
            raise ValueError(f"mixup/cutmix pairs each clip with another of its batch: the batch needs an even "
                             f"number of clips, got {clips.shape[0]}")
        channels = clips.shape[1]
        frames = rearrange(clips, "b c t h w -> b (c t) h w").clone()  # timm mixes in place
        frames, targets = self.mixup(frames, labels)
        return rearrange(frames, "b (c t) h w -> b c t h w", c=channels), targets
