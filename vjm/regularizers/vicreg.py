"""VICReg's variance and covariance terms (Bardes et al., 2022) on a set of tokens."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from vjm.global_batch import gather_rows
from vjm.regularizers.base import Regularizer
from vjm.regularizers.registry import register_regularizer

VAR_EPS = 1e-4


def variance_covariance(tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """tokens (B, K, D), every token of the global batch one sample -> (variance, covariance).

    variance = mean over features of relu(1 - std); covariance = sum of the squared off-diagonal
    covariances / D. Together they keep an encoder from collapsing its tokens onto a few directions.
    The statistics are over every process's tokens (gathered with their gradients: vjm.global_batch),
    so the term is the one a single process would compute on the whole batch.
    """
    flat = gather_rows(tokens.float()).flatten(0, 1)
    flat = flat - flat.mean(dim=0)
    variance = F.relu(1.0 - torch.sqrt(flat.var(dim=0) + VAR_EPS)).mean()
    cov = flat.T @ flat / max(flat.shape[0] - 1, 1)
    covariance = (cov.square().sum() - cov.diagonal().square().sum()) / cov.shape[0]
    return variance, covariance


@register_regularizer("vicreg")
@dataclass
class VICReg(Regularizer):
    var_weight: float = 1.0
    cov_weight: float = 0.04

    def __post_init__(self) -> None:
        for name in ("var_weight", "cov_weight"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")

    def __call__(self, tokens: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        variance, covariance = variance_covariance(tokens)
        loss = self.var_weight * variance + self.cov_weight * covariance
        return loss, {"var": variance.detach(), "cov": covariance.detach()}
