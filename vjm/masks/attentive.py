"""Attentive masking (MILAN, UMT, seed 004's MFD): visible tokens drawn in proportion to a saliency.

A saliency depends on the clip as a teacher sees it, so these masks are drawn in the objective,
after the teacher's forward, not in the collator. The collator's mask of the same entry fixes how
many tokens stay visible (its ratio); which ones is drawn here, without replacement, with
probability proportional to saliency^(1 / temperature) (Gumbel top-k: the k largest of
log-weight + Gumbel noise are a draw of k items without replacement, each next one in proportion
to its weight). The noise comes from torch's global generator of the saliency's device, which the
engine checkpoints, so a resumed run draws the same masks; it is drawn for the global batch, so a
sample's mask is the same on any number of processes.
"""

from __future__ import annotations

import torch

from vjm.global_batch import draw_for_rows

SALIENCY_FLOOR = 1e-6  # a token of zero saliency may still be drawn, last


def attentive_split(saliency: torch.Tensor, num_visible: int, temperature: float = 1.0
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """saliency (B, N) >= 0 -> (visible (B, num_visible), masked (B, N - num_visible)), both sorted
    index tensors (raster order), visible tokens drawn in proportion to saliency^(1 / temperature)."""
    if saliency.dim() != 2:
        raise ValueError(f"attentive masks need a saliency (B, N), got shape {tuple(saliency.shape)}")
    tokens = saliency.shape[1]
    if not 1 <= num_visible < tokens:
        raise ValueError(f"attentive masks: cannot keep {num_visible} of {tokens} tokens visible (need 1 to "
                         f"{tokens - 1}); check the mask ratio")
    if temperature <= 0:
        raise ValueError(f"attentive masks: temperature must be > 0, got {temperature}")
    log_weight = saliency.float().clamp_min(SALIENCY_FLOOR).log() / temperature
    # Drawn for the global batch and sliced: a sample's mask does not depend on the number of processes.
    uniform = draw_for_rows(saliency.shape[0], lambda rows: torch.rand((rows, tokens), device=saliency.device))
    uniform = uniform.clamp_(1e-20, 1 - 1e-7)
    keys = log_weight - torch.log(-torch.log(uniform))  # + Gumbel(0, 1) noise
    order = keys.argsort(dim=1, descending=True)
    return order[:, :num_visible].sort(dim=1).values, order[:, num_visible:].sort(dim=1).values
