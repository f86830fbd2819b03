"""A regulariser's interface, and the list of them an objective applies."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn as nn


@dataclass
class Regularizer:
    """A loss term on one tensor the objective exposes. Subclasses are dataclasses whose fields are
    their config keys, registered with @register_regularizer(kind)."""

    kind: ClassVar[str]
    # False for a regulariser that changes how a model runs (attach) and adds no loss term.
    adds_loss: ClassVar[bool] = True
    apply_to: str = "context"  # the name of the exposed tensor this term applies to

    def __call__(self, tokens: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """tokens (B, K, D) -> (weighted loss term, unweighted metrics named without prefix)."""
        raise NotImplementedError

    def attach(self, objective: nn.Module) -> None:
        """Hook for regularisers that change a model rather than add a loss (none by default)."""


class Regularizers:
    """The config's regularisers; ``objective.regularizers(context=tokens)`` -> (loss, metrics)."""

    def __init__(self, items: Sequence[Regularizer]):
        self.items = list(items)

    def __bool__(self) -> bool:
        """Whether there is a loss term to compute (objectives skip the call otherwise)."""
        return any(item.adds_loss for item in self.items)

    def attach(self, objective: nn.Module) -> None:
        for item in self.items:
            item.attach(objective)

    def average(self, exposed: Sequence[Mapping[str, torch.Tensor]]) -> tuple[torch.Tensor | float,
                                                                              dict[str, torch.Tensor]]:
        """The term and metrics of each set of exposed tensors (one per mask of an objective), averaged;
        (0.0, {}) when no regulariser adds a loss term."""
        if not self or not exposed:
            return 0.0, {}
        results = [self(**tensors) for tensors in exposed]
        term = torch.stack([value for value, _ in results]).mean()
        return term, {key: torch.stack([values[key] for _, values in results]).mean() for key in results[0][1]}

    def __call__(self, **exposed: torch.Tensor) -> tuple[torch.Tensor | float, dict[str, torch.Tensor]]:
        total: torch.Tensor | float = 0.0
        metrics: dict[str, torch.Tensor] = {}
        for item in (item for item in self.items if item.adds_loss):
            if item.apply_to not in exposed:
                raise ValueError(f"regulariser {item.kind!r} applies to {item.apply_to!r}, but the objective exposes "
                                 f"only {sorted(exposed)}; set 'apply_to' to one of them")
            term, values = item(exposed[item.apply_to])
            total = total + term
            metrics.update({f"{item.apply_to}_{key}": value for key, value in values.items()})
        return total, metrics
