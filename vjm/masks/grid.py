"""The token grid that masks index: (T', H', W') = (frames / tubelet, height / patch, width / patch)."""

from __future__ import annotations

import math
from numbers import Integral
from typing import Sequence, Union

Grid = tuple[int, int, int]
Size = Union[int, Sequence[int]]


def is_int(value) -> bool:
    """True for Python and NumPy integers, False for bools (YAML ``yes`` must not pass as 1)."""
    return isinstance(value, Integral) and not isinstance(value, bool)


def check_grid(grid) -> Grid:
    """Return ``grid`` as a tuple of three positive ints or raise a ValueError that shows it."""
    if (
        isinstance(grid, (str, bytes))
        or not isinstance(grid, Sequence)
        or len(grid) != 3
        or not all(is_int(n) and n > 0 for n in grid)
    ):
        raise ValueError(f"token grid must be three positive integers (T', H', W'), got {grid!r}")
    return tuple(int(n) for n in grid)


def num_tokens(grid: Grid) -> int:
    return math.prod(grid)


def _pair(name: str, value: Size) -> tuple[int, int]:
    if is_int(value):
        return int(value), int(value)
    if isinstance(value, Sequence) and len(value) == 2 and all(is_int(v) for v in value):
        return int(value[0]), int(value[1])
    raise ValueError(f"{name} must be an integer or a pair of integers (height, width), got {value!r}")


def token_grid(frames: int, crop_size: Size, patch_size: Size, tubelet_size: int) -> Grid:
    """The (T', H', W') token grid of a clip of ``frames`` frames cropped to ``crop_size``.

    An image is a one-frame clip: the patch embedding repeats it to fill one tubelet, so
    ``frames == 1`` gives T' = 1 whatever the tubelet size.
    """
    for name, value in (("frames", frames), ("tubelet_size", tubelet_size)):
        if not is_int(value) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    crop_h, crop_w = _pair("crop_size", crop_size)
    patch_h, patch_w = _pair("patch_size", patch_size)
    if min(crop_h, crop_w, patch_h, patch_w) < 1:
        raise ValueError(f"crop_size and patch_size must be positive, got {crop_size!r} and {patch_size!r}")
    if crop_h % patch_h or crop_w % patch_w:
        raise ValueError(
            f"crop_size {crop_size!r} is not divisible by patch_size {patch_size!r}; "
            f"choose a crop that is a multiple of the patch size (e.g. {patch_h * max(1, crop_h // patch_h)})"
        )
    if frames > 1 and frames % tubelet_size:
        raise ValueError(
            f"frames_per_clip={frames} is not divisible by tubelet_size={tubelet_size}; "
            f"use a multiple of {tubelet_size} (or 1 for images)"
        )
    temporal = 1 if frames == 1 else frames // tubelet_size
    return temporal, crop_h // patch_h, crop_w // patch_w
