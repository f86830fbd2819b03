"""The attentive pooler and classifier: learned queries cross-attend over tokens, then a linear head.

    AttentiveClassifier(embed_dim=192, num_classes=8)(tokens)             # B x N x D -> B x 8
    AttentiveClassifier(..., depth=4)                                     # V-JEPA 2's deeper probe
    classifier(tokens, key_padding_mask=pad)                              # pad: B x N, True = padding

`depth - 1` self-attention blocks first mix the tokens (V-JEPA 2); the last block is a
cross-attention block whose queries are learned tokens (V-JEPA). Variable token counts are padded
and masked out of every attention, so padding never changes a result. `ProbeHeads` holds several
classifiers trained side by side on the same features (a learning-rate / weight-decay sweep).
None of them holds an encoder: the frozen-encoder probe (vjm.eval.probe) feeds them tokens.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

FEATURE_NORMS = ("none", "batchnorm")

__all__ = ["FEATURE_NORMS", "AttentiveClassifier", "AttentivePooler", "CrossAttentionBlock", "ProbeHeads",
           "SelfAttentionBlock", "TokenStandardizer", "average_predictions"]


def _attention_mask(key_padding_mask: torch.Tensor | None) -> torch.Tensor | None:
    """B x N (True = padding) -> B x 1 x 1 x N boolean mask for SDPA (True = attend)."""
    if key_padding_mask is None:
        return None
    if key_padding_mask.dtype != torch.bool or key_padding_mask.dim() != 2:
        raise ValueError(f"key_padding_mask must be a bool tensor B x N (True = padding), got "
                         f"{key_padding_mask.dtype} {tuple(key_padding_mask.shape)}")
    if bool(key_padding_mask.all(dim=1).any()):
        raise ValueError("key_padding_mask masks every token of a sample; each needs at least one real token")
    return ~key_padding_mask[:, None, None, :]


class MultiheadAttention(nn.Module):
    """Queries attend over keys/values; self-attention when both are the same tokens."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"the probe's num_heads = {num_heads} does not divide the encoder's width {dim}; "
                             f"choose a divisor of {dim} (e.g. {_divisor_near(dim, num_heads)})")
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, 2 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, queries: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        b, m, d = queries.shape
        h = self.num_heads
        q = self.q(queries).view(b, m, h, d // h).transpose(1, 2)
        k, v = self.kv(tokens).view(b, tokens.shape[1], 2, h, d // h).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.proj(out.transpose(1, 2).reshape(b, m, d))


def _divisor_near(n: int, k: int) -> int:
    return min((d for d in range(1, n + 1) if n % d == 0), key=lambda d: abs(d - k))


class MLP(nn.Sequential):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)


class SelfAttentionBlock(nn.Module):
    """Pre-norm transformer block over the tokens."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = MultiheadAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        y = self.norm1(x)
        x = x + self.attn(y, y, mask)
        return x + self.mlp(self.norm2(x))


class CrossAttentionBlock(nn.Module):
    """Queries gather from the (normalised) tokens, then an MLP refines the queries."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = MultiheadAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, int(dim * mlp_ratio))

    def forward(self, queries: torch.Tensor, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        queries = queries + self.attn(queries, self.norm1(x), mask)
        return queries + self.mlp(self.norm2(queries))


class AttentivePooler(nn.Module):
    """B x N x D tokens -> B x num_queries x D."""

    def __init__(self, embed_dim: int, num_queries: int = 1, num_heads: int = 12, mlp_ratio: float = 4.0,
                 depth: int = 1, init_std: float = 0.02):
        super().__init__()
        if depth < 1 or num_queries < 1:
            raise ValueError(f"depth and num_queries must be >= 1, got {depth} and {num_queries}")
        self.query_tokens = nn.Parameter(torch.zeros(1, num_queries, embed_dim))
        self.blocks = nn.ModuleList(SelfAttentionBlock(embed_dim, num_heads, mlp_ratio) for _ in range(depth - 1))
        self.cross_block = CrossAttentionBlock(embed_dim, num_heads, mlp_ratio)
        self.init_std = init_std
        nn.init.trunc_normal_(self.query_tokens, std=init_std)
        self.apply(self._init_weights)
        # Residual branches scaled down with depth (as in V-JEPA): a deep stack starts near identity.
        for layer, block in enumerate([*self.blocks, self.cross_block], start=1):
            block.attn.proj.weight.data.div_(math.sqrt(2.0 * layer))
            block.mlp.fc2.weight.data.div_(math.sqrt(2.0 * layer))

    def _init_weights(self, m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=self.init_std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def forward(self, tokens: torch.Tensor, key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        if tokens.dim() != 3 or tokens.shape[-1] != self.query_tokens.shape[-1]:
            raise ValueError(f"the probe expects tokens B x N x {self.query_tokens.shape[-1]}, got "
                             f"{tuple(tokens.shape)}")
        if key_padding_mask is not None and key_padding_mask.shape != tokens.shape[:2]:
            raise ValueError(f"key_padding_mask {tuple(key_padding_mask.shape)} does not match tokens "
                             f"{tuple(tokens.shape[:2])} (B x N)")
        mask = _attention_mask(key_padding_mask)
        for block in self.blocks:
            tokens = block(tokens, mask)
        queries = self.query_tokens.expand(tokens.shape[0], -1, -1).to(tokens.dtype)
        return self.cross_block(queries, tokens, mask)


class TokenStandardizer(nn.Module):
    """Per-channel standardisation of the frozen tokens, statistics over the valid tokens of the batch.

    MAE's linear probe puts a BatchNorm without affine before its head for the same reason: frozen
    features of different encoders differ in scale by channel, and the probe should not have to learn
    that first. Running statistics serve evaluation.
    """

    def __init__(self, embed_dim: int):
        super().__init__()
        self.norm = nn.BatchNorm1d(embed_dim, affine=False)

    def forward(self, tokens: torch.Tensor, key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        if key_padding_mask is None:
            return self.norm(tokens.flatten(0, 1)).view_as(tokens)
        valid = ~key_padding_mask
        out = torch.zeros_like(tokens)
        out[valid] = self.norm(tokens[valid])
        return out


class AttentiveClassifier(nn.Module):
    """Attentive pooler, then a linear head on the mean of the query outputs: B x N x D -> B x classes.

    ``feature_norm="batchnorm"`` standardises each channel of the tokens first (TokenStandardizer).
    """

    def __init__(self, embed_dim: int, num_classes: int, num_queries: int = 1, num_heads: int = 12,
                 mlp_ratio: float = 4.0, depth: int = 1, feature_norm: str = "none"):
        super().__init__()
        if feature_norm not in FEATURE_NORMS:
            raise ValueError(f"feature_norm must be one of {FEATURE_NORMS}, got {feature_norm!r}")
        self.standardize = TokenStandardizer(embed_dim) if feature_norm == "batchnorm" else None
        self.pooler = AttentivePooler(embed_dim, num_queries, num_heads, mlp_ratio, depth)
        self.head = nn.Linear(embed_dim, num_classes)
        nn.init.trunc_normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    def forward(self, tokens: torch.Tensor, key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.standardize is not None:
            tokens = self.standardize(tokens, key_padding_mask)
        return self.head(self.pooler(tokens, key_padding_mask).mean(dim=1))


class ProbeHeads(nn.ModuleList):
    """Independent classifiers over the same tokens; forward returns one logits tensor per head."""

    def forward(self, tokens: torch.Tensor, key_padding_mask: torch.Tensor | None = None) -> list[torch.Tensor]:
        return [head(tokens, key_padding_mask) for head in self]


def average_predictions(logits: torch.Tensor) -> torch.Tensor:
    """B x G x C logits of G views / segments of each sample -> B x C class probabilities (their mean)."""
    if logits.dim() != 3:
        raise ValueError(f"expected logits B x G x C (G = views or segments), got {tuple(logits.shape)}")
    return logits.float().softmax(dim=-1).mean(dim=1)
