"""Mask generators over the (T', H', W') token grid and the collator that attaches them to batches.

Build generators by name (``build_mask_generator("multiblock", grid, num_blocks=8)``) or from the
config's ``masks`` list (``build_mask_generators``); each ``sample(batch_size, generator)`` returns
sorted index tensors (context [B, Kc], target [B, Kt]) in raster order.
"""

from vjm.masks.base import GridError, MaskGenerator, subsample_sorted
from vjm.masks.grid import Grid, check_grid, token_grid
from vjm.masks.registry import (
    build_mask_generator,
    build_mask_generators,
    mask_kinds,
    mask_parameters,
    register_mask,
)

# Importing the generators registers their kinds.
from vjm.masks.multiblock import MultiBlockMask  # noqa: E402
from vjm.masks.tube import TubeMask  # noqa: E402
from vjm.masks.random import RandomMask  # noqa: E402
from vjm.masks.rows import ClipRowMask, FrameRowMask  # noqa: E402
from vjm.masks.collator import MaskCollator  # noqa: E402

__all__ = [
    "ClipRowMask",
    "FrameRowMask",
    "Grid",
    "GridError",
    "MaskCollator",
    "MaskGenerator",
    "MultiBlockMask",
    "RandomMask",
    "TubeMask",
    "build_mask_generator",
    "build_mask_generators",
    "check_grid",
    "mask_kinds",
    "mask_parameters",
    "register_mask",
    "subsample_sorted",
    "token_grid",
]
