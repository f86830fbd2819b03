"""How much a teacher attends to each token of a clip: what attentive masks keep visible (MFD).

    attention       a ViT teacher's last block: the attention of one pooled query (the mean of the
                    block's queries) to every token, averaged over heads (MILAN's and UMT's [CLS]
                    attention, for encoders trained without a cls token).
    dissimilarity   any teacher, the Mamba ones included: 1 - cos(token, the clip's mean token).
                    A Mamba block has no attention map to read. Of the saliencies its tokens give,
                    the distance from the clip's mean marks what stands out of the background (a
                    moving or distinctive object), is bounded ([0, 2]) and does not depend on the
                    teacher's feature scale; the token norm was not chosen because high-norm tokens
                    are often artefacts of uninformative background (ViTs need registers, 2023).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

SALIENCIES = ("auto", "attention", "dissimilarity")


def has_attention(teacher: nn.Module) -> bool:
    blocks = getattr(getattr(teacher, "stack", None), "blocks", None)
    return bool(blocks) and hasattr(blocks[-1], "attn") and hasattr(blocks[-1], "norm1")


def resolve_saliency(choice: str, teacher: nn.Module) -> str:
    """``auto``: attention for a ViT teacher, dissimilarity for any other; attention needs a ViT."""
    if choice == "auto":
        return "attention" if has_attention(teacher) else "dissimilarity"
    if choice == "attention" and not has_attention(teacher):
        raise ValueError(f"'objective.saliency' = 'attention' reads a ViT teacher's last attention block, but the "
                         f"teacher is a {type(teacher).__name__}; use 'dissimilarity' (or 'auto')")
    if choice not in SALIENCIES:
        raise ValueError(f"'objective.saliency' must be one of {SALIENCIES}, got {choice!r}")
    return choice


def dissimilarity(tokens: torch.Tensor) -> torch.Tensor:
    """(B, N, D) -> (B, N): 1 - cosine similarity of each token to the mean token of its clip."""
    tokens = tokens.float()
    return 1.0 - F.cosine_similarity(tokens, tokens.mean(dim=1, keepdim=True), dim=-1)


def pooled_query_attention(block: nn.Module, inputs: torch.Tensor, has_cls: bool) -> torch.Tensor:
    """A timm ViT block's attention from the mean of its queries to each token: (B, N), rows sum to 1.

    ``inputs`` (B, N, D) is what the block received; a leading cls token is left out of the result."""
    attn = block.attn
    x = block.norm1(inputs)
    batch, tokens, _ = x.shape
    q, k, _ = attn.qkv(x).reshape(batch, tokens, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    q, k = attn.q_norm(q), attn.k_norm(k)
    pooled = q.mean(dim=2, keepdim=True)  # (B, heads, 1, head_dim)
    weights = ((pooled * k).sum(dim=-1).float() * attn.scale).softmax(dim=-1).mean(dim=1)  # (B, N)
    if has_cls:
        weights = weights[:, 1:]
        weights = weights / weights.sum(dim=1, keepdim=True)
    return weights


@torch.no_grad()
def teacher_tokens(teacher: nn.Module, clip: torch.Tensor, saliency: str | None) -> tuple[torch.Tensor,
                                                                                          torch.Tensor | None]:
    """-> (the teacher's tokens (B, N, D), its saliency of each (B, N) or None when not asked for)."""
    if saliency != "attention":
        tokens = teacher(clip)
        return tokens, dissimilarity(tokens) if saliency == "dissimilarity" else None
    seen: list[torch.Tensor] = []
    last = teacher.stack.blocks[-1]
    handle = last.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    try:
        tokens = teacher(clip)
    finally:
        handle.remove()
    return tokens, pooled_query_attention(last, seen[0], teacher.cls_token is not None)
