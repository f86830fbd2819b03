"""VideoMamba: a stack of bidirectional Mamba blocks over spatiotemporal tokens."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn as nn

from .blocks import MambaBlock, MambaMLPBlock
from .encoder import TokenEncoder, check_checkpoint_blocks, run_block
from .mamba import expand_uni_state_dict
from .registry import register_model

BLOCKS = {"mamba": MambaBlock, "mambamlp": MambaMLPBlock}


def column_order(grid: tuple[int, int, int], keep: torch.Tensor | None, batch: int, device) -> torch.Tensor:
    """(B, L) positions of the tokens when read column by column (time, columns, rows)."""
    t, h, w = grid
    index = torch.arange(t * h * w, device=device)
    col_key = (index // (h * w)) * h * w + (index % w) * h + (index % (h * w)) // w
    if keep is None:
        return col_key.argsort().expand(batch, -1)
    return col_key[keep].argsort(dim=1)


class MambaStack(nn.Module):
    """Blocks + final norm over embedded tokens: the body of VideoMamba and of its predictor."""

    def __init__(self, embed_dim: int, depth: int, block: str = "mamba", scan: str = "bi", merge: str = "mean",
                 drop_path: float = 0.0, norm_eps: float = 1e-5, scan_backend: str = "auto",
                 checkpoint_blocks: int = 0, **block_kwargs):
        super().__init__()
        if block not in BLOCKS:
            raise ValueError(f"VideoMamba: block must be one of {sorted(BLOCKS)}, got {block!r}")
        self.depth, self.scan = depth, scan
        self.checkpoint_blocks = check_checkpoint_blocks(checkpoint_blocks, depth)
        rates = [drop_path * i / max(depth - 1, 1) for i in range(depth)]  # stochastic depth grows with depth
        self.blocks = nn.ModuleList(
            BLOCKS[block](embed_dim, drop_path=rate, norm_eps=norm_eps, scan=scan, merge=merge,
                          scan_backend=scan_backend, **block_kwargs)
            for rate in rates
        )
        self.norm = nn.RMSNorm(embed_dim, eps=norm_eps)
        self._init_weights(residuals_per_layer=2 if block == "mambamlp" else 1)

    def _init_weights(self, residuals_per_layer: int) -> None:
        # mamba_ssm's scheme: zero linear biases (except tagged dt biases) and shrink the output
        # projections of residual branches by sqrt(depth). Nothing else is re-initialised, so
        # the dt, A and D initialisation of the mixers survives.
        for module in self.modules():
            if isinstance(module, nn.Linear) and module.bias is not None:
                if not getattr(module.bias, "_no_reinit", False):
                    nn.init.zeros_(module.bias)
        for param in self.parameters():
            if getattr(param, "_is_residual_out", False):
                nn.init.kaiming_uniform_(param, a=math.sqrt(5))
                with torch.no_grad():
                    param /= math.sqrt(residuals_per_layer * self.depth)

    def forward(self, tokens: torch.Tensor, col_order: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_with_taps(tokens, (), col_order)[0]

    def forward_with_taps(self, tokens: torch.Tensor, taps: Sequence[int], col_order: torch.Tensor | None = None
                          ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """-> (the normed output, [the residual stream (fp32, not normed) after each block in ``taps``]);
        blocks count from 1 (ARM's decoder reads blocks 6/8/10/12 of 12)."""
        if any(not 1 <= tap <= self.depth for tap in taps):
            raise ValueError(f"taps {list(taps)} must be blocks between 1 and the depth ({self.depth})")
        hidden, residual, streams = tokens, None, {}
        for i, block in enumerate(self.blocks):
            hidden, residual = run_block(block, i < self.checkpoint_blocks, hidden, residual, col_order)
            if i + 1 in taps:
                streams[i + 1] = residual + hidden
        residual = residual + hidden
        return self.norm(residual.to(self.norm.weight.dtype)), [streams[tap] for tap in taps]


class VideoMamba(TokenEncoder):
    forwards_kwargs_to = MambaStack  # **stack_kwargs: what the registry reports as this model's arguments

    def __init__(self, embed_dim: int = 192, depth: int = 24, patch_size: int = 16, tubelet_size: int = 2,
                 in_chans: int = 3, use_cls_token: bool = False, **stack_kwargs):
        super().__init__(embed_dim, patch_size, tubelet_size, in_chans, use_cls_token)
        self.stack = MambaStack(embed_dim, depth, **stack_kwargs)

    @property
    def scan(self) -> str:
        return self.stack.scan

    def adapt_state_dict(self, weights):
        """A 1-scan (uni) checkpoint into a bi or quad model: every direction starts from the one
        pre-trained direction (ARM's 1 -> 4 expansion). Other weights are left to the strict load."""
        one_direction = any(".directions.0." in key for key in weights) and not any(
            ".directions.1." in key for key in weights)
        if self.scan != "uni" and one_direction:
            return expand_uni_state_dict(weights, self.scan)
        return weights

    def encode(self, tokens, grid, keep):
        col_order = None
        if self.scan == "quad":
            col_order = column_order(grid, keep, tokens.shape[0], tokens.device)
            if self.cls_token is not None:  # the cls token leads both orderings
                col_order = torch.cat([col_order.new_zeros(col_order.shape[0], 1), col_order + 1], dim=1)
        return self.stack(tokens, col_order)


@register_model
def videomamba_tiny(**kwargs) -> VideoMamba:
    return VideoMamba(**{"embed_dim": 192, "depth": 24, **kwargs})


@register_model
def videomamba_small(**kwargs) -> VideoMamba:
    return VideoMamba(**{"embed_dim": 384, "depth": 24, **kwargs})


@register_model
def videomamba_middle(**kwargs) -> VideoMamba:
    return VideoMamba(**{"embed_dim": 576, "depth": 32, **kwargs})


@register_model
def videomamba_base(**kwargs) -> VideoMamba:
    return VideoMamba(**{"embed_dim": 768, "depth": 24, **kwargs})


@register_model
def mambamlp_tiny(**kwargs) -> VideoMamba:
    """ViT-Ti's width and depth in 1-scan MambaMLP blocks: ARM's toy configs."""
    return VideoMamba(**{"embed_dim": 192, "depth": 12, "block": "mambamlp", "scan": "uni", **kwargs})


@register_model
def mambamlp_base(**kwargs) -> VideoMamba:
    """ARM-B: 1-scan MambaMLP blocks for autoregressive pre-training (scan="quad" to fine-tune)."""
    return VideoMamba(**{"embed_dim": 768, "depth": 12, "block": "mambamlp", "scan": "uni", **kwargs})


@register_model
def mambamlp_large(**kwargs) -> VideoMamba:
    return VideoMamba(**{"embed_dim": 1024, "depth": 24, "block": "mambamlp", "scan": "uni", **kwargs})
