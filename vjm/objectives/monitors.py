"""Quantities logged to watch training, not optimised."""

from __future__ import annotations

import math

import torch

from vjm.global_batch import gather_rows, process_share

MAX_TOKENS = 4096  # enough for a stable estimate at any width vjm uses, cheap at every step


@torch.no_grad()
@torch.autocast("cuda", enabled=False)  # in fp32 whatever the step's autocast: eigh has no bf16 kernel
@torch.autocast("cpu", enabled=False)
def effective_rank(tokens: torch.Tensor) -> torch.Tensor:
    """Effective rank (Roy & Vetterli, 2007) of a batch's features (B, ..., D) over the global
    batch (every process's rows: vjm.global_batch): exp of the entropy of the normalised singular
    values of the centred features. D for isotropic features, 1 when they have collapsed onto one
    direction: a falling value is representation collapse under way."""
    rows = tokens.detach().float().reshape(tokens.shape[0], -1, tokens.shape[-1])
    _, world = process_share()
    # The same evenly spaced tokens of every sample, about MAX_TOKENS over the global batch, whatever
    # the number of processes: deterministic, no random draw.
    stride = math.ceil(rows.shape[0] * world * rows.shape[1] / MAX_TOKENS)
    flat = gather_rows(rows[:, ::stride]).flatten(0, 1)
    flat = flat - flat.mean(dim=0)
    # Singular values from the D x D Gram matrix's eigenvalues: cheaper than an SVD of N x D.
    singular = torch.linalg.eigvalsh(flat.T @ flat).clamp_min(0).sqrt()
    p = singular / singular.sum().clamp_min(1e-12)
    entropy = -(p * torch.log(p.clamp_min(1e-12))).sum()
    return torch.exp(entropy)
