"""Stochastic depth (drop path) whose per-sample draws do not depend on the number of processes.

timm's DropPath draws one keep/drop per row of the process's batch from the process's stream, so
a sample's draw depends on which process holds it and where. Here the draws are made for the
global batch's rows from torch's stream, which every process of a run shares (vjm.train.engine
seeds them alike), and each process keeps its block of them (vjm.global_batch): sample i of a
global batch is dropped alike on one process or many. The stream being torch's own, activation
checkpointing's recomputation (which restores it) redraws the same mask.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from vjm.global_batch import draw_for_rows


class DropPath(nn.Module):
    """Zero a sample's residual branch with probability ``drop_prob`` in training, scale the kept by 1 / keep."""

    def __init__(self, drop_prob: float):
        super().__init__()
        if not 0.0 <= drop_prob < 1.0:
            raise ValueError(f"drop_path must be in [0, 1), got {drop_prob}")
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        draws = draw_for_rows(x.shape[0], lambda n: torch.rand(n, device=x.device))
        scale = (draws < keep).to(x.dtype) / keep
        return x * scale.view(-1, *[1] * (x.dim() - 1))

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob:g}"


def drop_path_or_identity(drop_prob: float) -> nn.Module:
    return DropPath(drop_prob) if drop_prob > 0 else nn.Identity()
