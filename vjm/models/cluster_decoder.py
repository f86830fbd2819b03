"""ARM's decoder: queries of the clusters to predict cross-attend to the encoder's tokens, block-causally.

Keys and values come from several depths of the encoder ("taps"): each tap is layer-normed, the
taps are concatenated and one linear layer projects them to a memory for every decoder block
(ARM's ``enc2dec``). The queries are a learned token plus the fixed sin-cos position of each
token to predict. A block is cross-attention then an MLP, each pre-normed; there is no
self-attention, so a query's only view of the input is through the mask it is given. A final
LayerNorm and a linear head give each query's pixels.

    decoder = ClusterDecoder(embed_dim=768, num_taps=4, width=512, depth=4, num_heads=8, out_dim=768)
    pixels = decoder(taps, query_pos, attend)      # attend: (Q, K) bool, True = query may see key
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange
from timm.layers import Mlp


class CrossAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"ClusterDecoder: width {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, queries: torch.Tensor, memory: torch.Tensor, attend: torch.Tensor) -> torch.Tensor:
        q = rearrange(self.q(queries), "b n (h d) -> b h n d", h=self.num_heads)
        k, v = rearrange(self.kv(memory), "b n (two h d) -> two b h n d", two=2, h=self.num_heads)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attend)
        return self.proj(rearrange(out, "b h n d -> b n (h d)"))


class CrossAttentionBlock(nn.Module):
    """queries + attn(LN(queries), LN(memory)), then + MLP(LN(.)): ARM's decoder block."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm_q, self.norm_memory = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = CrossAttention(dim, num_heads)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, queries: torch.Tensor, memory: torch.Tensor, attend: torch.Tensor) -> torch.Tensor:
        queries = queries + self.attn(self.norm_q(queries), self.norm_memory(memory), attend)
        return queries + self.mlp(self.norm_mlp(queries))


class ClusterDecoder(nn.Module):
    def __init__(self, embed_dim: int, num_taps: int, width: int = 512, depth: int = 4, num_heads: int = 8,
                 out_dim: int = 768, mlp_ratio: float = 4.0):
        super().__init__()
        self.width, self.depth = width, depth
        self.tap_norms = nn.ModuleList(nn.LayerNorm(embed_dim) for _ in range(num_taps))
        self.memory = nn.Linear(num_taps * embed_dim, depth * width)
        self.query = nn.Parameter(torch.zeros(width))
        self.blocks = nn.ModuleList(CrossAttentionBlock(width, num_heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, out_dim)
        # MAE's decoder initialisation (xavier linears, unit norms), as ARM's code does.
        self.apply(_init_linear)
        nn.init.trunc_normal_(self.query, std=0.02)

    def forward(self, taps: list[torch.Tensor], query_pos: torch.Tensor, attend: torch.Tensor) -> torch.Tensor:
        """taps: the encoder's tokens at each tap, each (B, K, D); query_pos: (Q, width) positions of the
        tokens to predict; attend: (Q, K) bool, True where a query may see a token. -> (B, Q, out_dim)."""
        if len(taps) != len(self.tap_norms):
            raise ValueError(f"ClusterDecoder: built for {len(self.tap_norms)} encoder taps, given {len(taps)}")
        normed = torch.cat([norm(tap) for norm, tap in zip(self.tap_norms, taps)], dim=-1)
        memories = rearrange(self.memory(normed), "b k (depth w) -> depth b k w", depth=self.depth)
        queries = (self.query + query_pos).expand(taps[0].shape[0], -1, -1)
        for block, memory in zip(self.blocks, memories):
            queries = block(queries, memory, attend)
        return self.head(self.norm(queries))


def _init_linear(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
