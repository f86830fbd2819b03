"""Residual blocks around the Mamba mixer, with the residual stream kept in fp32.

Both blocks use mamba_ssm's (hidden, residual) protocol: a block receives the previous block's
output and the running residual sum, adds them in fp32, normalises, and mixes. The encoder
adds the last output and applies the final norm.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from timm.layers import SwiGLU

from .drop_path import drop_path_or_identity
from .mamba import MambaMixer


def _accumulate(hidden: torch.Tensor, residual: torch.Tensor | None, drop_path: nn.Module) -> torch.Tensor:
    residual = hidden if residual is None else residual + drop_path(hidden)
    return residual.float()


class MambaBlock(nn.Module):
    """VideoMamba / Vim block: residual add, RMSNorm, bidirectional Mamba mixer."""

    def __init__(self, dim: int, drop_path: float = 0.0, norm_eps: float = 1e-5, **mixer_kwargs):
        super().__init__()
        self.norm = nn.RMSNorm(dim, eps=norm_eps)
        self.mixer = MambaMixer(dim, **mixer_kwargs)
        self.drop_path = drop_path_or_identity(drop_path)

    def forward(self, hidden, residual, col_order=None):
        residual = _accumulate(hidden, residual, self.drop_path)
        hidden = self.mixer(self.norm(residual.to(self.norm.weight.dtype)), col_order=col_order)
        return hidden, residual


class MambaMLPBlock(nn.Module):
    """ARM's MambaMLP block: a Mamba mixer (expand 1) then a SwiGLU MLP, each pre-normed."""

    def __init__(self, dim: int, drop_path: float = 0.0, norm_eps: float = 1e-5, mlp_ratio: float = 4.0,
                 **mixer_kwargs):
        super().__init__()
        mixer_kwargs.setdefault("expand", 1)
        self.norm = nn.RMSNorm(dim, eps=norm_eps)
        self.mixer = MambaMixer(dim, **mixer_kwargs)
        self.norm_mlp = nn.RMSNorm(dim, eps=norm_eps)
        # 2/3 of the ViT width keeps the parameter count of a GELU MLP of the same ratio.
        self.mlp = SwiGLU(dim, hidden_features=int(dim * mlp_ratio * 2 / 3))
        self.mlp.fc2._is_residual_out = True
        self.drop_path = drop_path_or_identity(drop_path)

    def forward(self, hidden, residual, col_order=None):
        residual = _accumulate(hidden, residual, self.drop_path)
        mixed = self.mixer(self.norm(residual.to(self.norm.weight.dtype)), col_order=col_order)
        residual = _accumulate(mixed, residual, self.drop_path)
        hidden = self.mlp(self.norm_mlp(residual.to(self.norm_mlp.weight.dtype)))
        return hidden, residual
