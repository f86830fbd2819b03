"""From context tokens to outputs at the target positions: V-JEPA's predictor (features) and
MAE's decoder (pixels).

Context tokens are projected to the predictor's width; every target position gets a learned mask
token (one per mask kind). Both sets get their 3D sin-cos positions and are merged by position,
so the sequence the predictor scans is in raster order, as the encoder's is. The outputs at the
target positions are projected to ``out_dim`` (the encoder's width unless given).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .encoder import gather_tokens
from .pos_embed import sincos_3d
from .videomamba import MambaStack
from .vit import AttentionStack


class Predictor(nn.Module):
    def __init__(self, embed_dim: int, width: int = 192, depth: int = 6, kind: str = "mamba",
                 num_heads: int = 6, num_mask_tokens: int = 1, scan_backend: str = "auto", merge: str = "mean",
                 out_dim: int | None = None):
        super().__init__()
        self.width = width
        self.embed = nn.Linear(embed_dim, width)
        self.mask_tokens = nn.Parameter(torch.zeros(num_mask_tokens, width))
        nn.init.trunc_normal_(self.mask_tokens, std=0.02)
        if kind == "mamba":
            self.body = MambaStack(width, depth, scan="bi", merge=merge, scan_backend=scan_backend)
        elif kind == "attention":
            self.body = AttentionStack(width, depth, num_heads)
        else:
            raise ValueError(f"Predictor: kind must be 'mamba' or 'attention', got {kind!r}")
        self.proj = nn.Linear(width, embed_dim if out_dim is None else out_dim)

    def forward(self, context: torch.Tensor, context_idx: torch.Tensor, target_idx: torch.Tensor,
                grid: tuple[int, int, int], mask_index: int = 0, with_context: bool = False):
        """context: (B, Kc, D) encoder output at context_idx (B, Kc); -> (B, Kt, out_dim) at target_idx.

        ``with_context``: also return the outputs at the context positions, (B, Kc, out_dim), as a pair
        (targets, context) -- for a loss on the visible tokens too (V-JEPA 2.1's dense loss)."""
        if not 0 <= mask_index < self.mask_tokens.shape[0]:
            raise IndexError(f"Predictor: mask_index {mask_index} but only {self.mask_tokens.shape[0]} mask tokens")
        batch, num_context = context_idx.shape
        pos = sincos_3d(self.width, grid, context.device, context.dtype)
        tokens = torch.cat([
            self.embed(context) + pos[context_idx],
            self.mask_tokens[mask_index].expand(batch, target_idx.shape[1], -1) + pos[target_idx],
        ], dim=1)
        # Merge by position: context and target sets are disjoint, so sorting gives raster order.
        order = torch.cat([context_idx, target_idx], dim=1).argsort(dim=1)
        tokens = self.body(gather_tokens(tokens, order))
        slot = order.argsort(dim=1)  # where each input token sits in the merged sequence
        if with_context:
            outputs = self.proj(gather_tokens(tokens, slot))
            return outputs[:, num_context:], outputs[:, :num_context]
        return self.proj(gather_tokens(tokens, slot[:, num_context:]))
