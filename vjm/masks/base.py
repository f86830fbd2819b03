"""The interface every mask generator shares, its parameter checks, and unbiased batching.

A generator draws, for a batch, which tokens of the (T', H', W') grid the context encoder sees
and which the predictor must fill in. Models need rectangular index tensors, so every row of a
batch must hold the same number of context (and of target) tokens. V-JEPA gets there by cutting
each sorted list at the batch minimum, which always drops the last tokens in raster order (the
bottom-right of the last frames). Here the surplus is dropped as a uniformly random subset
instead, so no position is favoured.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from numbers import Real
from typing import Any, ClassVar, Optional, Sequence

import torch
from torch import Tensor

from vjm.masks.grid import Grid, check_grid, is_int, num_tokens


def subsample_sorted(mask: Tensor, k: int, generator: torch.Generator) -> Tensor:
    """Pick ``k`` of the True positions of each row of ``mask`` [B, N] uniformly at random.

    Returns the picked positions sorted per row as a LongTensor [B, k]. Every row must hold at
    least ``k`` True entries. A row with exactly ``k`` keeps all of them.
    """
    if mask.dtype != torch.bool or mask.dim() != 2:
        raise ValueError(f"mask must be a bool tensor [B, N], got {mask.dtype} of shape {tuple(mask.shape)}")
    counts = mask.sum(dim=1)
    if k < 0 or (mask.shape[0] and int(counts.min()) < k):
        raise ValueError(f"cannot keep {k} tokens per row: the smallest row holds {int(counts.min())}")
    # Random keys in [0, 1) on the candidates and 2 elsewhere: the k smallest keys form a
    # uniformly random k-subset of each row's candidates.
    keys = torch.rand(mask.shape, generator=generator).masked_fill_(~mask, 2.0)
    picked = keys.topk(k, dim=1, largest=False, sorted=False).indices
    return picked.sort(dim=1).values


@dataclass(kw_only=True)
class MaskGenerator(abc.ABC):
    """Base class: subclasses say which tokens are context and which are target (``sample_dense``)."""

    kind: ClassVar[str] = ""
    grid: Grid

    def __post_init__(self) -> None:
        self.grid = check_grid(self.grid)

    @property
    def num_tokens(self) -> int:
        return num_tokens(self.grid)

    def draw_shared(self, generator: torch.Generator) -> Any:
        """What every sample of a batch shares, drawn once per (global) batch: None unless a kind has
        something (multiblock: its box shape, so that samples hold similar token counts)."""
        return None

    @abc.abstractmethod
    def sample_dense(self, batch_size: int, generator: torch.Generator, shared: Any = None) -> tuple[Tensor, Tensor]:
        """Draw a batch of masks as two disjoint bool tensors [B, N]: (context, target).

        ``shared`` is what ``draw_shared`` drew for the batch; when None it is drawn here first.
        Rows may differ in how many tokens they hold; every row holds at least one of each.
        """

    def max_context_tokens(self) -> Optional[int]:
        """An upper bound on context tokens per sample, or None for no bound."""
        return None

    def common_counts(self, context: Tensor, target: Tensor) -> tuple[int, int]:
        """How many context and target tokens every row of a batch keeps: its smallest row's, the
        context capped by ``max_context_tokens``. ``context``, ``target``: dense bool [B, N]."""
        num_context = int(context.sum(dim=1).min())
        num_target = int(target.sum(dim=1).min())
        if num_context == 0 or num_target == 0:
            empty = "context" if num_context == 0 else "target"
            raise ValueError(f"mask kind {self.kind!r} on grid {self.grid} drew a sample with no {empty} tokens")
        cap = self.max_context_tokens()
        return (num_context if cap is None else min(num_context, cap)), num_target

    def sample(self, batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Draw a batch of masks as sorted index tensors (context [B, Kc], target [B, Kt]).

        Rows with more tokens than the batch's smallest row are cut down to it by a uniformly
        random subset, so the kept tokens are not biased toward any end of the raster order.
        (The training collator does the same per sample over a global batch: vjm.masks.collator.)
        """
        if not is_int(batch_size) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if not isinstance(generator, torch.Generator):
            raise ValueError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        context, target = self.sample_dense(batch_size, generator)
        num_context, num_target = self.common_counts(context, target)
        return subsample_sorted(context, num_context, generator), subsample_sorted(target, num_target, generator)


# ----------------------------------------------------------------------------- parameter checks
# Each returns the normalised value or raises a ValueError naming the parameter; the registry
# prefixes the message with where the parameter came from.


class GridError(ValueError):
    """Parameter values that this token grid cannot honour (they may suit another grid)."""


def check_int(name: str, value, *, minimum: int) -> int:
    if not is_int(value) or value < minimum:
        raise ValueError(f"parameter '{name}' must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _is_number(value) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def check_fraction(name: str, value, *, include_one: bool) -> float:
    """A number in (0, 1] (``include_one``) or (0, 1)."""
    interval = "(0, 1]" if include_one else "(0, 1)"
    if not _is_number(value) or not (0 < value < 1 or (include_one and value == 1)):
        raise ValueError(f"parameter '{name}' must be a number in {interval}, got {value!r}")
    return float(value)


def check_range(name: str, value, *, upper: Optional[float]) -> tuple[float, float]:
    """A number or a pair [min, max] with 0 < min <= max (<= ``upper`` when given).

    A single number means a fixed value, [x, x].
    """
    bound = f" <= {upper:g}" if upper is not None else ""
    what = f"a number or a pair [min, max] with 0 < min <= max{bound}"
    if _is_number(value):
        low = high = value
    elif (
        isinstance(value, Sequence)
        and not isinstance(value, (str, bytes))
        and len(value) == 2
        and all(_is_number(v) for v in value)
    ):
        low, high = value
    else:
        raise ValueError(f"parameter '{name}' must be {what}, got {value!r}")
    if not (0 < low <= high) or (upper is not None and high > upper):
        raise ValueError(f"parameter '{name}' must be {what}, got {value!r}")
    return float(low), float(high)
