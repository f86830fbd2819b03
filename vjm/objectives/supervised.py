"""Supervised training of an encoder with the labels: the upper bound of a quality comparison.

The encoder's tokens are classified by an attentive pooler (the probe's: a learned query
cross-attends over them) or by their mean, layer-normalised, through a linear layer; the loss is
cross-entropy (with optional label smoothing). Mean pooling discards where and when each token
was, which motion tasks need; the attentive head keeps it, as the probe does. It runs through the same engine as the
self-supervised objectives, so the bound and the pre-trained encoders share data, schedules and
checkpoints, and the probe evaluates its encoder like any other.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from vjm.config import AT_LEAST_1, Config, ObjectiveConfig, Range, param
from vjm.eval.pooler import AttentiveClassifier
from vjm.models import build_encoder

from .base import Objective
from .registry import register_objective


@dataclass
class SupervisedConfig(ObjectiveConfig):
    """Cross-entropy on the dataset's labels."""

    name: str = param("supervised", "pre-training objective; its own keys are documented in vjm/objectives/<name>.py")
    num_classes: int = param(10, "classes of the labels (labels run from 0 to num_classes - 1)", range=Range(2))
    label_smoothing: float = param(0.0, "label smoothing of the cross-entropy", range=Range(0, 1, open_hi=True))
    head: str = param("attentive", "classifier over the tokens: the probe's attentive pooler, or mean pooling",
                      choices=("attentive", "mean"))
    num_heads: int = param(12, "attention heads of the attentive head (must divide the encoder's width)",
                           range=AT_LEAST_1)


class MeanPoolClassifier(nn.Module):
    """B x N x D tokens -> B x num_classes logits: mean over tokens, LayerNorm, linear."""

    def __init__(self, embed_dim: int, num_classes: int):
        super().__init__()
        self.norm = nn.LayerNorm(embed_dim)
        self.fc = nn.Linear(embed_dim, num_classes)
        nn.init.trunc_normal_(self.fc.weight, std=0.02)
        nn.init.zeros_(self.fc.bias)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.fc(self.norm(tokens.mean(dim=1)))


@register_objective("supervised", SupervisedConfig)
class Supervised(Objective):
    encoders = ("encoder",)
    eval_encoder = "encoder"

    def __init__(self, encoder: nn.Module, num_classes: int, label_smoothing: float = 0.0, head: str = "attentive",
                 num_heads: int = 12):
        super().__init__()
        self.encoder = encoder
        if head == "attentive":
            self.head = AttentiveClassifier(encoder.embed_dim, num_classes, num_heads=num_heads)
        elif head == "mean":
            self.head = MeanPoolClassifier(encoder.embed_dim, num_classes)
        else:
            raise ValueError(f"Supervised: head must be 'attentive' or 'mean', got {head!r}")
        self.num_classes, self.label_smoothing = num_classes, label_smoothing

    @classmethod
    def from_config(cls, cfg: Config) -> "Supervised":
        obj: SupervisedConfig = cfg.objective  # type: ignore[assignment]
        return cls(build_encoder(cfg.model), obj.num_classes, obj.label_smoothing, obj.head, obj.num_heads)

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        labels = batch["label"]
        if not labels.is_cuda and labels.numel() and int(labels.max()) >= self.num_classes:
            raise ValueError(f"a label is {int(labels.max())} but objective.num_classes = {self.num_classes}; "
                             f"raise it to at least {int(labels.max()) + 1}")
        tokens = self.encoder(batch["clip"])
        logits = self.head(tokens).float()
        loss = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
        if self.regularizers:
            term, values = self.regularizers(tokens=tokens)
            loss = loss + term
        else:
            values = {}
        accuracy = (logits.argmax(dim=-1) == labels).float().mean()
        return loss, {"loss": loss.detach(), "top1": 100 * accuracy.detach(), **values}
