"""A ViT with VideoMamba's interface (3D patches, 3D sin-cos positions, `keep`): V-JEPA's encoder."""

from __future__ import annotations

from functools import partial

import torch
import torch.nn as nn
from timm.models.vision_transformer import Block

from .drop_path import drop_path_or_identity
from .encoder import TokenEncoder, check_checkpoint_blocks, run_block
from .registry import register_model


class AttentionStack(nn.Module):
    """Pre-norm transformer blocks (timm, SDPA attention) + final LayerNorm over embedded tokens."""

    def __init__(self, embed_dim: int, depth: int, num_heads: int, mlp_ratio: float = 4.0,
                 drop_path: float = 0.0, qkv_bias: bool = True, checkpoint_blocks: int = 0):
        super().__init__()
        self.checkpoint_blocks = check_checkpoint_blocks(checkpoint_blocks, depth)
        if embed_dim % num_heads:
            raise ValueError(f"attention width {embed_dim} is not divisible by num_heads {num_heads}")
        rates = [drop_path * i / max(depth - 1, 1) for i in range(depth)]  # stochastic depth grows with depth
        # timm's Block uses F.scaled_dot_product_attention (flash attention where available).
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, drop_path=rate,
                  norm_layer=partial(nn.LayerNorm, eps=1e-6))
            for rate in rates
        )
        for block, rate in zip(self.blocks, rates):  # drawn for the global batch, not timm's per process
            block.drop_path1, block.drop_path2 = drop_path_or_identity(rate), drop_path_or_identity(rate)
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.apply(self._init_linear)

    @staticmethod
    def _init_linear(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        for i, block in enumerate(self.blocks):
            tokens = run_block(block, i < self.checkpoint_blocks, tokens)
        return self.norm(tokens)


class VisionTransformer(TokenEncoder):
    def __init__(self, embed_dim: int = 768, depth: int = 12, num_heads: int = 12, mlp_ratio: float = 4.0,
                 patch_size: int = 16, tubelet_size: int = 2, in_chans: int = 3, drop_path: float = 0.0,
                 use_cls_token: bool = False, qkv_bias: bool = True, checkpoint_blocks: int = 0):
        super().__init__(embed_dim, patch_size, tubelet_size, in_chans, use_cls_token)
        self.stack = AttentionStack(embed_dim, depth, num_heads, mlp_ratio, drop_path, qkv_bias, checkpoint_blocks)

    def encode(self, tokens, grid, keep):
        return self.stack(tokens)


@register_model
def vit_tiny(**kwargs) -> VisionTransformer:
    return VisionTransformer(**{"embed_dim": 192, "depth": 12, "num_heads": 3, **kwargs})


@register_model
def vit_small(**kwargs) -> VisionTransformer:
    return VisionTransformer(**{"embed_dim": 384, "depth": 12, "num_heads": 6, **kwargs})


@register_model
def vit_base(**kwargs) -> VisionTransformer:
    return VisionTransformer(**{"embed_dim": 768, "depth": 12, "num_heads": 12, **kwargs})
