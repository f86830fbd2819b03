"""V-JEPA with VideoMamba: predict the EMA target encoder's features of masked tokens.

For each mask kind, the context encoder sees only the context tokens, the predictor fills in
the target positions, and the loss compares those predictions with the target encoder's
features of the full clip (layer-normalised, no gradient). Losses are averaged over mask kinds.
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

from vjm.models.encoder import gather_tokens

VAR_EPS = 1e-4


def variance_term(pred: torch.Tensor, form: str) -> torch.Tensor:
    """pred: (B, K, D).

    sqrt:  the VideoMamba-JEPA paper's R: mean over predicted tokens of sqrt(Var(z) + eps), the
           variance taken over each token's features.
    hinge: V-JEPA's code: mean of relu(1 - std), the std of each feature over a sample's tokens.
    """
    pred = pred.float()
    if form == "sqrt":
        return torch.sqrt(pred.var(dim=-1) + VAR_EPS).mean()
    if form == "hinge":
        return F.relu(1.0 - torch.sqrt(pred.var(dim=1) + VAR_EPS)).mean()
    raise ValueError(f"variance form must be 'sqrt' or 'hinge', got {form!r}")


def context_regularizers(context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """VICReg's variance and covariance terms on the context encoder's tokens, (B, K, D).

    Every context token of the batch is one sample: variance = mean over features of
    relu(1 - std), covariance = sum of the squared off-diagonal covariances / D. Together they
    keep the context encoder from collapsing its tokens onto a few directions, which the EMA
    target then inherits.
    """
    tokens = context.float().flatten(0, 1)
    tokens = tokens - tokens.mean(dim=0)
    variance = F.relu(1.0 - torch.sqrt(tokens.var(dim=0) + VAR_EPS)).mean()
    cov = tokens.T @ tokens / max(tokens.shape[0] - 1, 1)
    dim = cov.shape[0]
    covariance = (cov.square().sum() - cov.diagonal().square().sum()) / dim
    return variance, covariance


class VJEPA(nn.Module):
    def __init__(self, encoder: nn.Module, predictor: nn.Module, loss: str = "l1", var_weight: float = 0.0,
                 var_form: str = "sqrt", target_layernorm: bool = True,
                 ema_momentum: tuple[float, float] = (0.998, 1.0), context_var_weight: float = 0.0,
                 context_cov_weight: float = 0.0):
        super().__init__()
        if loss not in ("l1", "l2"):
            raise ValueError(f"VJEPA: loss must be 'l1' or 'l2', got {loss!r}")
        self.encoder = encoder
        self.target_encoder = copy.deepcopy(encoder).requires_grad_(False)
        self.predictor = predictor
        self.loss, self.var_weight, self.var_form = loss, var_weight, var_form
        self.context_var_weight, self.context_cov_weight = context_var_weight, context_cov_weight
        self.target_layernorm, self.ema_momentum = target_layernorm, ema_momentum

    @property
    def regularises_context(self) -> bool:
        return self.context_var_weight > 0 or self.context_cov_weight > 0

    def train(self, mode: bool = True):
        super().train(mode)
        self.target_encoder.eval()  # no drop path in the teacher
        return self

    @torch.no_grad()
    def targets(self, clip: torch.Tensor) -> torch.Tensor:
        features = self.target_encoder(clip)
        if self.target_layernorm:
            features = F.layer_norm(features, features.shape[-1:])
        return features

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        clip, masks = batch["clip"], batch["masks"]
        grid = self.encoder.patch_embed.grid(clip.shape)
        targets = self.targets(clip)
        distances, variances, context_terms = [], [], []
        for mask_index, (context_idx, target_idx) in enumerate(masks):
            context = self.encoder(clip, keep=context_idx)
            pred = self.predictor(context, context_idx, target_idx, grid, mask_index)
            diff = pred.float() - gather_tokens(targets, target_idx).float()
            distances.append(diff.abs().mean() if self.loss == "l1" else diff.square().mean())
            variances.append(variance_term(pred, self.var_form))
            # Logged even when off: a falling context_var / rising context_cov is collapse under way.
            with torch.set_grad_enabled(torch.is_grad_enabled() and self.regularises_context):
                context_terms.append(torch.stack(context_regularizers(context)))
        distance = torch.stack(distances).mean()
        variance = torch.stack(variances).mean()
        context_var, context_cov = torch.stack(context_terms).mean(dim=0)
        loss = (distance + self.var_weight * variance
                + self.context_var_weight * context_var + self.context_cov_weight * context_cov)
        metrics = {"loss": loss.detach(), f"{self.loss}": distance.detach(), "var": variance.detach(),
                   "context_var": context_var.detach(), "context_cov": context_cov.detach()}
        for mask_index, value in enumerate(distances):
            metrics[f"{self.loss}_mask{mask_index}"] = value.detach()
        return loss, metrics

    @torch.no_grad()
    def after_optimizer_step(self, progress: float) -> dict[str, float]:
        """EMA of the context encoder into the target encoder; momentum linear in progress."""
        start, end = self.ema_momentum
        momentum = start + (end - start) * min(max(progress, 0.0), 1.0)
        target = list(self.target_encoder.parameters())
        online = [p.detach() for p in self.encoder.parameters()]
        torch._foreach_lerp_(target, online, 1.0 - momentum)
        return {"ema": momentum}
