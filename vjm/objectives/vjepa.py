"""V-JEPA with VideoMamba: predict the EMA target encoder's features of masked tokens.

For each mask kind, the context encoder sees only the context tokens, the predictor fills in
the target positions, and the loss compares those predictions with the target encoder's
features of the full clip (layer-normalised, no gradient). Losses are averaged over mask kinds.
The context tokens are exposed to the config's regularisers as ``context``; the effective rank of
the targets is logged as a collapse monitor (``target_rank``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from vjm.config import AT_LEAST_1, NONNEG, PROB, Config, ObjectiveConfig, param
from vjm.models import Predictor, build_encoder
from vjm.models.encoder import gather_tokens

from .base import Objective
from .monitors import effective_rank
from .registry import register_objective

VAR_EPS = 1e-4


def _block_mask(num_blocks: int, scale: float) -> dict[str, Any]:
    return {"kind": "multiblock", "num_blocks": num_blocks, "spatial_scale": [scale, scale],
            "temporal_scale": [1.0, 1.0], "aspect_ratio": [0.75, 1.5]}


@dataclass
class PredictorConfig:
    """The network that predicts masked-token features from context tokens."""

    kind: str = param("mamba", "predictor architecture", choices=("mamba", "attention"))
    width: int = param(192, "predictor embedding width", range=AT_LEAST_1)
    depth: int = param(6, "number of predictor blocks", range=AT_LEAST_1)
    num_heads: int = param(6, "attention heads (attention predictor only)", range=AT_LEAST_1)


@dataclass
class VJEPAConfig(ObjectiveConfig):
    """V-JEPA: the context encoder, its EMA target and the predictor."""

    needs_masks = True
    # V-JEPA's pair: 8 small blocks (short range) + 2 large blocks (long range), full temporal extent.
    default_masks = (_block_mask(8, 0.15), _block_mask(2, 0.7))

    name: str = param("vjepa", "pre-training objective; its own keys are documented in vjm/objectives/<name>.py")
    loss: str = param("l1", "distance between predicted and target features", choices=("l1", "l2"))
    var_weight: float = param(0.0, "weight (lambda) of the variance term on predicted features; 0 = off",
                              range=NONNEG)
    var_form: str = param("sqrt", "variance term: mean sqrt(var + eps), or mean relu(1 - std) (V-JEPA's code)",
                          choices=("sqrt", "hinge"))
    target_layernorm: bool = param(True, "layer-normalise target features before the loss")
    context_weight: float = param(0.0, "weight of the same loss on the predictor's outputs at the visible context "
                                  "tokens against their target features (V-JEPA 2.1's dense loss); 0 = off",
                                  range=NONNEG)
    ema_momentum: tuple[float, float] = param((0.998, 1.0), "target-encoder EMA momentum, start and end (linear)",
                                              range=PROB, ascending=True)
    predictor: PredictorConfig = field(default_factory=PredictorConfig)

    def cross_check(self, cfg: Config) -> list[str]:
        p = self.predictor
        if p.kind == "attention" and p.width % p.num_heads:
            return [f"'objective.predictor.width' = {p.width} is not divisible by "
                    f"'objective.predictor.num_heads' = {p.num_heads}"]
        return []


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


@register_objective("vjepa", VJEPAConfig)
class VJEPA(Objective):
    encoders = ("target_encoder", "encoder")
    eval_encoder = "target_encoder"

    def __init__(self, encoder: nn.Module, predictor: nn.Module, loss: str = "l1", var_weight: float = 0.0,
                 var_form: str = "sqrt", target_layernorm: bool = True,
                 ema_momentum: tuple[float, float] = (0.998, 1.0), context_weight: float = 0.0):
        super().__init__()
        if loss not in ("l1", "l2"):
            raise ValueError(f"VJEPA: loss must be 'l1' or 'l2', got {loss!r}")
        self.encoder = encoder
        self.target_encoder = copy.deepcopy(encoder).requires_grad_(False)
        self.predictor = predictor
        self.loss, self.var_weight, self.var_form = loss, var_weight, var_form
        self.target_layernorm, self.ema_momentum = target_layernorm, ema_momentum
        self.context_weight = context_weight

    @classmethod
    def from_config(cls, cfg: Config) -> "VJEPA":
        obj: VJEPAConfig = cfg.objective  # type: ignore[assignment]
        encoder = build_encoder(cfg.model)
        pred = obj.predictor
        predictor = Predictor(
            encoder.embed_dim, width=pred.width, depth=pred.depth, kind=pred.kind, num_heads=pred.num_heads,
            num_mask_tokens=len(cfg.masks), scan_backend=cfg.model.scan_backend,
            merge=cfg.model.bidirectional_merge,
        )
        return cls(encoder, predictor, loss=obj.loss, var_weight=obj.var_weight, var_form=obj.var_form,
                   target_layernorm=obj.target_layernorm, ema_momentum=tuple(obj.ema_momentum),
                   context_weight=obj.context_weight)

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
        distances, context_distances, variances, exposed = [], [], [], []
        for mask_index, (context_idx, target_idx) in enumerate(masks):
            context = self.encoder(clip, keep=context_idx)
            if self.context_weight:
                pred, pred_context = self.predictor(context, context_idx, target_idx, grid, mask_index,
                                                    with_context=True)
                context_distances.append(self.distance(pred_context, gather_tokens(targets, context_idx)))
            else:
                pred = self.predictor(context, context_idx, target_idx, grid, mask_index)
            distances.append(self.distance(pred, gather_tokens(targets, target_idx)))
            variances.append(variance_term(pred, self.var_form))
            exposed.append({"context": context})
        distance = torch.stack(distances).mean()
        variance = torch.stack(variances).mean()
        loss = distance + self.var_weight * variance
        metrics = {f"{self.loss}": distance.detach(), "var": variance.detach()}
        if context_distances:
            context_distance = torch.stack(context_distances).mean()
            loss = loss + self.context_weight * context_distance
            metrics[f"{self.loss}_context"] = context_distance.detach()
        term, regularizer_metrics = self.regularizers.average(exposed)
        loss = loss + term
        metrics.update(regularizer_metrics)
        # Collapse monitor: the targets' effective rank falls long before the loss says anything.
        metrics = {"loss": loss.detach(), **metrics, "target_rank": effective_rank(targets)}
        for mask_index, value in enumerate(distances):
            metrics[f"{self.loss}_mask{mask_index}"] = value.detach()
        return loss, metrics

    def distance(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        diff = pred.float() - target.float()
        return diff.abs().mean() if self.loss == "l1" else diff.square().mean()

    @torch.no_grad()
    def after_optimizer_step(self, progress: float) -> dict[str, float]:
        """EMA of the context encoder into the target encoder; momentum linear in progress."""
        start, end = self.ema_momentum
        momentum = start + (end - start) * min(max(progress, 0.0), 1.0)
        target = list(self.target_encoder.parameters())
        online = [p.detach() for p in self.encoder.parameters()]
        torch._foreach_lerp_(target, online, 1.0 - momentum)
        return {"ema": momentum}
