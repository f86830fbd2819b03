"""Pictures of clips for people: normalised clips back to colours, and views of a few clips side by side.

    grid = reconstruction_grid({"input": a, "masked": b, "reconstruction": c})   # 3 x H x W in [0, 1]

Each clip gets one row per view, each row a label and up to ``max_frames`` of the clip's frames
(evenly spaced), enlarged by a whole factor so that small toy frames are visible. The result is a
tensor that TensorBoard's ``add_image`` and ``save_png`` both take.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from vjm.data.transforms import IMAGENET_MEAN, IMAGENET_STD

LABEL_WIDTH = 104  # pixels left of each row for its name
MIN_SIDE = 96  # frames smaller than this are enlarged (nearest) by a whole factor
GAP = 2  # between frames and between views
CLIP_GAP = 8  # between clips
_BACKGROUND = (255, 255, 255)
_TEXT = (20, 20, 20)


def to_display(clip: torch.Tensor) -> torch.Tensor:
    """A clip normalised by the data pipeline (ImageNet mean/std) -> colours in [0, 1]."""
    mean = clip.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1, 1)
    std = clip.new_tensor(IMAGENET_STD).view(1, 3, 1, 1, 1)
    return (clip * std + mean).clamp(0, 1)


def shown_frames(num_frames: int, max_frames: int) -> list[int]:
    """Up to ``max_frames`` evenly spaced frame indices, first and last included."""
    if num_frames <= max_frames:
        return list(range(num_frames))
    return np.linspace(0, num_frames - 1, max_frames).round().astype(int).tolist()


def grid_size(batch: int, views: int, frames: int, height: int, width: int, max_frames: int = 8) -> tuple[int, int]:
    """(width, height) in pixels of the picture reconstruction_grid draws for clips of this shape."""
    scale = -(-MIN_SIDE // min(height, width))
    columns = len(shown_frames(frames, max_frames))
    picture_width = LABEL_WIDTH + columns * (width * scale + GAP)
    picture_height = batch * views * (height * scale + GAP) + (batch - 1) * CLIP_GAP
    return picture_width, picture_height


def reconstruction_grid(views: dict[str, torch.Tensor], max_frames: int = 8) -> torch.Tensor:
    """Views {name: clips (B, 3, T, H, W) in [0, 1]}, all of one shape -> a picture (3, H', W') in [0, 1]."""
    if not views:
        raise ValueError("reconstruction_grid needs at least one view")
    shapes = {name: tuple(clips.shape) for name, clips in views.items()}
    first = next(iter(shapes.values()))
    if len(first) != 5 or first[1] != 3 or len(set(shapes.values())) != 1:
        raise ValueError(f"reconstruction_grid needs views of one shape (B, 3, T, H, W), got {shapes}")
    batch, _, frames, height, width = first
    scale = -(-MIN_SIDE // min(height, width))
    columns = shown_frames(frames, max_frames)
    picture = Image.new("RGB", grid_size(batch, len(views), frames, height, width, max_frames), _BACKGROUND)
    draw = ImageDraw.Draw(picture)
    tile_h, tile_w = height * scale, width * scale
    y = 0
    for b in range(batch):
        for name, clips in views.items():
            draw.text((4, y + tile_h // 2 - 6), name, fill=_TEXT)
            pixels = (clips[b, :, columns].float().cpu() * 255).round().to(torch.uint8)  # 3, F, H, W
            pixels = pixels.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3)
            for column, frame in enumerate(pixels.permute(1, 2, 3, 0).numpy()):
                picture.paste(Image.fromarray(frame), (LABEL_WIDTH + column * (tile_w + GAP), y))
            y += tile_h + GAP
        y += CLIP_GAP
    return torch.from_numpy(np.asarray(picture).copy()).permute(2, 0, 1).float() / 255


def save_png(picture: torch.Tensor, path: str | Path) -> Path:
    """Write a (3, H, W) picture in [0, 1] as a PNG."""
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"cannot write {path}: folder {path.parent} does not exist")
    array = (picture.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    Image.fromarray(array).save(path)
    return path
