"""Quantities logged to watch training, not optimised."""

from __future__ import annotations

import torch

MAX_TOKENS = 4096  # enough for a stable estimate at any width vjm uses, cheap at every step


@torch.no_grad()
@torch.autocast("cuda", enabled=False)  # in fp32 whatever the step's autocast: eigh has no bf16 kernel
@torch.autocast("cpu", enabled=False)
def effective_rank(tokens: torch.Tensor) -> torch.Tensor:
    """Effective rank (Roy & Vetterli, 2007) of a set of features (..., D): exp of the entropy of
    the normalised singular values of the centred features. D for isotropic features, 1 when they
    have collapsed onto one direction: a falling value is representation collapse under way."""
    flat = tokens.detach().reshape(-1, tokens.shape[-1]).float()
    if flat.shape[0] > MAX_TOKENS:  # an evenly spaced subset: deterministic, no random draw
        flat = flat[torch.linspace(0, flat.shape[0] - 1, MAX_TOKENS, device=flat.device).long()]
    flat = flat - flat.mean(dim=0)
    # Singular values from the D x D Gram matrix's eigenvalues: cheaper than an SVD of N x D.
    singular = torch.linalg.eigvalsh(flat.T @ flat).clamp_min(0).sqrt()
    p = singular / singular.sum().clamp_min(1e-12)
    entropy = -(p * torch.log(p.clamp_min(1e-12))).sum()
    return torch.exp(entropy)
