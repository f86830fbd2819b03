"""What every encoder shares: patch embedding, 3D positions, token selection and a cls token.

`forward(clip, keep=None)` returns B x K x D tokens in raster order. `keep` (B x K, sorted) names
the tokens to process: a context encoder sees only its tokens, never the masked ones.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

from .patch_embed import PatchEmbed3D
from .pos_embed import sincos_3d


def check_keep(keep: torch.Tensor, batch: int, num_tokens: int) -> None:
    if keep.dim() != 2 or keep.shape[0] != batch or keep.dtype != torch.long:
        raise ValueError(
            f"keep must be a LongTensor of shape (batch={batch}, K), got {keep.dtype} {tuple(keep.shape)}"
        )
    if keep.is_cuda:  # value checks would synchronise the GPU on every forward
        return
    if keep.numel() and (keep.min() < 0 or keep.max() >= num_tokens):
        raise ValueError(f"keep holds indices outside [0, {num_tokens}) for a clip of {num_tokens} tokens")
    if keep.shape[1] > 1 and not bool((keep[:, 1:] > keep[:, :-1]).all()):
        raise ValueError("keep must be sorted and without repeats in every row (raster order)")


def check_checkpoint_blocks(checkpoint_blocks: int, depth: int) -> int:
    if not 0 <= checkpoint_blocks <= depth:
        raise ValueError(f"checkpoint_blocks must be between 0 and the depth ({depth}), got {checkpoint_blocks}")
    return checkpoint_blocks


def run_block(block: nn.Module, checkpointed: bool, *args):
    """block(*args); with `checkpointed`, under autograd, its activations are recomputed in the
    backward instead of kept (VideoMamba's use_checkpoint / checkpoint_num)."""
    if checkpointed and torch.is_grad_enabled():
        return checkpoint(block, *args, use_reentrant=False)
    return block(*args)


def gather_tokens(tokens: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """tokens (B, N, D), index (B, K) -> (B, K, D)."""
    return tokens.gather(1, index.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))


class TokenEncoder(nn.Module):
    """Base of VideoMamba and ViT: subclasses implement `encode(tokens, grid, keep)`."""

    def __init__(self, embed_dim: int, patch_size: int = 16, tubelet_size: int = 2, in_chans: int = 3,
                 use_cls_token: bool = False):
        super().__init__()
        self.embed_dim = embed_dim
        self.patch_embed = PatchEmbed3D(patch_size, tubelet_size, in_chans, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if use_cls_token else None
        if self.cls_token is not None:
            nn.init.trunc_normal_(self.cls_token, std=0.02)

    def embed(self, clip: torch.Tensor, keep: torch.Tensor | None) -> tuple[torch.Tensor, tuple]:
        tokens, grid = self.patch_embed(clip)
        tokens = tokens + sincos_3d(self.embed_dim, grid, tokens.device, tokens.dtype)
        if keep is not None:
            check_keep(keep, tokens.shape[0], tokens.shape[1])
            tokens = gather_tokens(tokens, keep)
        return tokens, grid

    def forward_features(self, clip: torch.Tensor, keep: torch.Tensor | None = None):
        """-> (tokens B x K x D, cls B x D or None)."""
        tokens, grid = self.embed(clip, keep)
        if self.cls_token is not None:
            tokens = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1).to(tokens.dtype), tokens], dim=1)
        tokens = self.encode(tokens, grid, keep)
        if self.cls_token is not None:
            return tokens[:, 1:], tokens[:, 0]
        return tokens, None

    def forward(self, clip: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_features(clip, keep)[0]

    def encode(self, tokens: torch.Tensor, grid: tuple, keep: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def adapt_state_dict(self, weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Saved weights of a related architecture made to fit this one before a strict load (fine-tuning
        from a pre-training checkpoint); unchanged by default. A model family overrides it."""
        return weights
