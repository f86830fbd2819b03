"""Clip transforms: decoded uint8 frames ``[T, H, W, 3]`` -> normalised views ``[V, C, T, H, W]``.

Frames are wrapped as a torchvision ``tv_tensors.Video``, so every v2 transform draws its random
parameters once per call and applies them to all frames: a clip stays spatially aligned through
crops, flips, RandAugment and random erasing. Training gives one view (V = 1) per clip;
evaluation gives one centre crop or three crops along the long side (V = 3).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

EVAL_CROPS = ("center", "three")
# The usual evaluation recipe: resize the short side to crop / 0.875 (256 for 224) and centre-crop.
CENTER_CROP_FRACTION = 224 / 256


def frames_to_video(frames: np.ndarray | torch.Tensor) -> tv_tensors.Video:
    """uint8 ``[T, H, W, C]`` frames (as decoded) -> ``Video`` ``[T, C, H, W]``."""
    frames = torch.as_tensor(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected frames shaped [T, H, W, 3], got {tuple(frames.shape)}")
    return tv_tensors.Video(frames.permute(0, 3, 1, 2))


def _check_range(name: str, value: Sequence[float], low: float, high: float | None = None) -> tuple[float, float]:
    if len(value) != 2 or not (low < value[0] <= value[1]) or (high is not None and value[1] > high):
        bound = f"<= {high}" if high is not None else ""
        raise ValueError(f"{name} must be (min, max) with {low} < min <= max {bound}, got {tuple(value)}.")
    return float(value[0]), float(value[1])


class ClipTransform:
    """Base: turns frames into ``[V, C, T, H, W]`` normalised float views."""

    num_views: int = 1

    def __init__(self, crop_size: int, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
        if not isinstance(crop_size, int) or crop_size < 1:
            raise ValueError(f"crop_size must be a positive integer, got {crop_size!r}.")
        if len(mean) != 3 or len(std) != 3 or any(s <= 0 for s in std):
            raise ValueError(f"mean and std need 3 values each (std > 0), got {mean} and {std}.")
        self.crop_size = crop_size
        self.normalize = v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))])

    def views(self, video: tv_tensors.Video) -> list[torch.Tensor]:
        raise NotImplementedError

    def __call__(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        views = self.views(frames_to_video(frames))
        # [T, C, H, W] -> [C, T, H, W], the layout of a clip.
        return torch.stack([view.as_subclass(torch.Tensor).permute(1, 0, 2, 3) for view in views])


class TrainClipTransform(ClipTransform):
    """Random resized crop, horizontal flip, optional RandAugment, normalisation, optional erasing."""

    def __init__(
        self,
        crop_size: int = 224,
        scale: Sequence[float] = (0.3, 1.0),
        aspect: Sequence[float] = (3 / 4, 4 / 3),
        hflip: bool = True,
        randaugment: bool = False,
        randaugment_ops: int = 2,
        randaugment_magnitude: int = 9,
        random_erasing: float = 0.0,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ):
        super().__init__(crop_size, mean, std)
        scale = _check_range("random_resize_scale", scale, 0.0, 1.0)
        aspect = _check_range("random_resize_aspect", aspect, 0.0)
        if not 0.0 <= random_erasing <= 1.0:
            raise ValueError(f"random_erasing is a probability in [0, 1], got {random_erasing!r}.")
        steps = [v2.RandomResizedCrop(crop_size, scale=scale, ratio=aspect, antialias=True)]
        if hflip:
            steps.append(v2.RandomHorizontalFlip())
        if randaugment:
            # On uint8 frames, after cropping: fewer pixels to transform.
            steps.append(v2.RandAugment(num_ops=randaugment_ops, magnitude=randaugment_magnitude))
        steps.append(self.normalize)
        if random_erasing > 0:
            # Erases with Gaussian noise ("pixel" mode, as in V-JEPA), same box and noise on every frame.
            steps.append(v2.RandomErasing(p=random_erasing, value="random"))
        self.pipeline = v2.Compose(steps)

    def views(self, video: tv_tensors.Video) -> list[torch.Tensor]:
        return [self.pipeline(video)]


class EvalClipTransform(ClipTransform):
    """``"center"``: resize the short side to crop/0.875, centre crop (1 view).

    ``"three"``: resize the short side to crop, then crops at the start, middle and end of the
    long side (3 views), the usual multi-view video evaluation.
    """

    def __init__(
        self,
        crop_size: int = 224,
        eval_crop: str = "center",
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ):
        super().__init__(crop_size, mean, std)
        if eval_crop not in EVAL_CROPS:
            raise ValueError(f"eval_crop must be one of {EVAL_CROPS}, got {eval_crop!r}.")
        self.eval_crop = eval_crop
        self.num_views = 1 if eval_crop == "center" else 3

    def views(self, video: tv_tensors.Video) -> list[torch.Tensor]:
        size = self.crop_size
        if self.eval_crop == "center":
            video = F.resize(video, round(size / CENTER_CROP_FRACTION), antialias=True)
            return [self.normalize(F.center_crop(video, [size, size]))]
        video = F.resize(video, size, antialias=True)
        height, width = video.shape[-2:]
        long_side = max(height, width)
        views = []
        for start in (0, (long_side - size) // 2, long_side - size):
            top, left = (start, 0) if height > width else (0, start)
            views.append(self.normalize(F.crop(video, top, left, size, size)))
        return views


def build_transform(
    training: bool,
    crop_size: int = 224,
    random_resize_scale: Sequence[float] = (0.3, 1.0),
    random_resize_aspect: Sequence[float] = (3 / 4, 4 / 3),
    hflip: bool = True,
    randaugment: bool = False,
    randaugment_ops: int = 2,
    randaugment_magnitude: int = 9,
    random_erasing: float = 0.0,
    eval_crop: str = "center",
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> ClipTransform:
    if training:
        return TrainClipTransform(
            crop_size, random_resize_scale, random_resize_aspect, hflip, randaugment,
            randaugment_ops, randaugment_magnitude, random_erasing, mean, std,
        )
    return EvalClipTransform(crop_size, eval_crop, mean, std)
