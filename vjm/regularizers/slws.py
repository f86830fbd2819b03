"""SLWS, stochastic layer-wise shuffle (seed 004): a regulariser that changes how the trained encoder
runs rather than adding a loss term.

    regularizers: [{kind: slws, rate: 0.4}]

Block l of L (counted from 0) shuffles with probability rate x l / (L - 1): never the first block,
``rate`` the last, linear between (the paper's schedule; its code's ``linspace(0, rate, depth)``).
In training, each block makes one Bernoulli draw per forward; when it fires, one permutation of the
sequence, the same for the whole batch, reorders the block's hidden and residual streams before
the block and the inverse permutation restores them after it, so later blocks see raster order.
In evaluation nothing happens. With the quad scan, the column order the block reads is recomputed
for the shuffled sequence (its column directions still read the tokens column by column).

The draws come from torch's global generators (the Bernoulli draw on the CPU's, the permutation on
the device's), which the engine saves in every checkpoint and restores on resume, so a resumed run
shuffles exactly as the uninterrupted one; activation checkpointing replays them in its
recomputation. SLWS goes on the objective's trained encoder only (``Objective.trained_encoder``),
never on an EMA target or a frozen teacher; only on Mamba blocks (attention is equivariant to a
permutation of its tokens, so shuffling a ViT would change nothing); and never in ARM, whose causal
scan order is what hides each token's targets from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn as nn
from torch.utils.hooks import RemovableHandle

from vjm.regularizers.base import Regularizer
from vjm.regularizers.registry import register_regularizer


def shuffle_probabilities(rate: float, depth: int) -> list[float]:
    """The shuffle probability of each of ``depth`` blocks: 0 for the first, ``rate`` for the last."""
    return [rate * layer / max(depth - 1, 1) for layer in range(depth)]


def _reorder(tokens: torch.Tensor | None, order: torch.Tensor) -> torch.Tensor | None:
    return None if tokens is None else tokens[:, order]


def shuffle_block(block: nn.Module, probability: float) -> list[RemovableHandle]:
    """Hooks that make ``block`` (the (hidden, residual[, col_order]) -> (hidden, residual) protocol
    of vjm's Mamba blocks) run on a shuffled sequence with ``probability`` while it is training."""
    inverse: list[torch.Tensor | None] = [None]  # set before the block, used after it

    def before(module: nn.Module, args: tuple):
        inverse[0] = None
        if not module.training or torch.rand(()).item() >= probability:
            return None
        hidden, residual, *rest = args
        order = torch.randperm(hidden.shape[1], device=hidden.device)
        inverse[0] = order.argsort()
        col_order = rest[0] if rest else None
        if col_order is not None:  # token i now sits at inverse[i]: read the same columns there
            col_order = inverse[0][col_order]
        return (hidden[:, order], _reorder(residual, order), col_order)

    def after(module: nn.Module, args: tuple, output: tuple):
        if inverse[0] is None:
            return None
        hidden, residual = output
        return hidden[:, inverse[0]], _reorder(residual, inverse[0])

    return [block.register_forward_pre_hook(before), block.register_forward_hook(after)]


def shuffle_blocks(blocks: nn.ModuleList, rate: float) -> list[RemovableHandle]:
    """SLWS on a stack's blocks with the linear schedule; blocks of probability 0 get no hook, so
    ``rate`` 0 leaves the model (and the random streams) exactly as without SLWS."""
    handles = []
    for block, probability in zip(blocks, shuffle_probabilities(rate, len(blocks))):
        if probability > 0:
            handles += shuffle_block(block, probability)
    return handles


@register_regularizer("slws")
@dataclass
class LayerShuffle(Regularizer):
    """SLWS; seed 004 uses rate 0.1 / 0.4 / 0.6 (MFD, base / large / huge) and 0.5 (supervised)."""

    adds_loss: ClassVar[bool] = False
    apply_to: str = "encoder"  # the objective's child it shuffles: must be its trained encoder
    rate: float = 0.1  # the last block's shuffle probability

    def __post_init__(self) -> None:
        if not isinstance(self.rate, (int, float)) or isinstance(self.rate, bool) or not 0 <= self.rate <= 1:
            raise ValueError(f"rate must be a probability in [0, 1] (the last block's), got {self.rate!r}")
        self.rate = float(self.rate)

    def attach(self, objective: nn.Module) -> None:
        name, trained = type(objective).__name__, getattr(objective, "trained_encoder", "encoder")
        if self.apply_to != trained:
            raise ValueError(f"regulariser 'slws' applies to {self.apply_to!r}, but {name} trains {trained!r} (an "
                             f"EMA target or a frozen teacher is never shuffled); set apply_to: {trained}")
        stack = getattr(getattr(objective, trained, None), "stack", None)
        from vjm.models.videomamba import MambaStack  # the models import nothing from here

        if not isinstance(stack, MambaStack):
            kind = type(getattr(objective, trained, None)).__name__
            raise ValueError(f"regulariser 'slws' shuffles the token sequence of Mamba blocks, but the {trained!r} of "
                             f"{name} is a {kind}: attention does not depend on token order, so a shuffle would "
                             "change nothing. Use a Mamba model (videomamba_*, mambamlp_*) or remove 'slws'")
        if getattr(objective, "causal", False):
            raise ValueError(f"regulariser 'slws' cannot shuffle {name}'s encoder: its causal scan order is what keeps "
                             "each token from seeing the tokens it must predict, and a shuffle would show them; "
                             "remove 'slws' (shuffle when fine-tuning the encoder instead)")
        shuffle_blocks(stack.blocks, self.rate)

    def __call__(self, tokens: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise TypeError("regulariser 'slws' adds no loss term; it acts through attach()")
