"""Supervised training of an encoder with the labels: the supervised bound, and fine-tuning.

The encoder's tokens are classified by an attentive pooler (the probe's: a learned query
cross-attends over them) or by their mean, layer-normalised, through a linear layer; the loss is
cross-entropy (with optional label smoothing). Mean pooling discards where and when each token
was, which motion tasks need; the attentive head keeps it, as the probe does. It runs through the same
engine as the self-supervised objectives, so the bound and the pre-trained encoders share data,
schedules and checkpoints, and the probe evaluates its encoder like any other.

Fine-tuning is the same objective with ``init.checkpoint`` set: the encoder starts from a vjm
checkpoint's (any objective's; vjm.eval.frozen.load_encoder_weights), and the papers' recipe knobs
are keys here (mixup, cutmix, a weight EMA) or elsewhere in the config (optim.layer_decay,
model.drop_path, data.randaugment / random_erasing, optim.clip_grad). ``python -m evals.finetune``
trains it and evaluates the classifier on data.val over ``evaluation``'s segments and views.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.loss import SoftTargetCrossEntropy
from timm.utils import ModelEmaV3

from vjm.config import AT_LEAST_1, NONNEG, PROB, Config, ObjectiveConfig, Range, param
from vjm.data.mixup import ClipMixup
from vjm.eval.pooler import AttentiveClassifier
from vjm.models import build_encoder

from .base import Objective
from .registry import register_objective

logger = logging.getLogger(__name__)


@dataclass
class InitConfig:
    """Where the encoder's weights start."""

    checkpoint: str | None = param(None, "vjm checkpoint whose encoder initialises this one: fine-tuning (python -m "
                                         "evals.finetune --checkpoint sets it); None = random init, the supervised "
                                         "baseline")
    encoder: str | None = param(None, "which encoder of the checkpoint's objective; None = the one it evaluates "
                                      "by default")
    head: str | None = param(None, "folder of a finished attentive probe of the encoder this run starts from "
                                   "(python -m evals.attentive_probe --output-dir): its best head starts the "
                                   "classifier, so that fine-tuning begins with a trained head (LP-FT); None = a "
                                   "new head")


@dataclass
class EvaluationConfig:
    """How python -m evals.finetune judges the trained classifier on data.val (predictions averaged)."""

    num_segments: int = param(1, "clips per validation video, evenly spaced (K400: 5, SSv2: 2)", range=AT_LEAST_1)
    num_views: int = param(1, "spatial views of each clip: 1 = centre crop, 3 = three crops along the long side",
                           choices=(1, 3))
    batch_size: int = param(8, "validation videos per batch in each process (each is segments x views clips)",
                            range=AT_LEAST_1)


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
    mixup: float = param(0.0, "Mixup's alpha (the mixing weight ~ Beta(alpha, alpha)); 0 = off", range=NONNEG)
    cutmix: float = param(0.0, "CutMix's alpha (the box's area ~ Beta(alpha, alpha)); 0 = off", range=NONNEG)
    mix_prob: float = param(1.0, "probability that a batch is mixed (mixup or cutmix)", range=PROB)
    mix_switch_prob: float = param(0.5, "with both on: probability of CutMix rather than Mixup", range=PROB)
    ema: float = param(0.0, "decay of an exponential moving average of the encoder and head (timm's ModelEmaV3), "
                            "checkpointed, and evaluated instead of the trained weights; 0 = off",
                       range=Range(0, 1, open_hi=True))
    init: InitConfig = field(default_factory=InitConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)

    @property
    def mixing(self) -> bool:
        return self.mixup > 0 or self.cutmix > 0

    def cross_check(self, cfg: Config) -> list[str]:
        problems = []
        if self.mixing and cfg.data.batch_size % 2:
            problems.append(f"'objective.mixup' / 'objective.cutmix' pair each sample with its neighbour in the "
                            f"batch: 'data.batch_size' = {cfg.data.batch_size} must be even")
        if self.init.head is not None and self.head != "attentive":
            problems.append(f"'objective.init.head' starts the classifier from a probe's attentive head, but "
                            f"'objective.head' = {self.head!r}: set it to 'attentive', or remove init.head")
        if self.init.encoder is not None and self.init.checkpoint is None:
            problems.append(f"'objective.init.encoder' = {self.init.encoder!r} names an encoder of a checkpoint, "
                            "but 'objective.init.checkpoint' is not set: set it, or remove the encoder")
        return problems


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


def probe_head(folder: str, encoder: nn.Module, num_classes: int) -> dict[str, torch.Tensor]:
    """The best head of the probe in ``folder``, checked to have read these very encoder weights (by
    fingerprint) and these classes: a head fitted to other features would start fine-tuning anywhere."""
    from vjm.eval.features import encoder_fingerprint  # vjm.eval imports the objectives
    from vjm.eval.probe_state import best_head

    state, results = best_head(folder)
    read, here = results["encoder"]["fingerprint"], encoder_fingerprint(encoder)
    if read != here:
        raise ValueError(f"objective.init.head: the probe in {folder} read other encoder weights (fingerprint {read}) "
                         f"than this run starts from ({here}). Probe the encoder it starts from: the same checkpoint "
                         "and encoder, or from scratch --random-init with --pretrain-config this config and run.seed "
                         "as the probe's seed")
    if results["num_classes"] != num_classes:
        raise ValueError(f"objective.init.head: the probe in {folder} has {results['num_classes']} classes, "
                         f"objective.num_classes = {num_classes}")
    logger.info("classifier initialised from the best head of the probe in %s (lr %s, top-1 %.1f)", folder,
                results["heads"][results["best_head"]]["lr"], results["top1"])
    return state


@register_objective("supervised", SupervisedConfig)
class Supervised(Objective):
    encoders = ("encoder",)
    eval_encoder = "encoder"

    def __init__(self, encoder: nn.Module, num_classes: int, label_smoothing: float = 0.0, head: str = "attentive",
                 num_heads: int = 12, mix: ClipMixup | None = None, ema: float = 0.0,
                 head_state: dict[str, torch.Tensor] | None = None):
        super().__init__()
        self.encoder = encoder
        if head == "attentive":
            self.head = AttentiveClassifier(encoder.embed_dim, num_classes, num_heads=num_heads)
        elif head == "mean":
            self.head = MeanPoolClassifier(encoder.embed_dim, num_classes)
        else:
            raise ValueError(f"Supervised: head must be 'attentive' or 'mean', got {head!r}")
        if head_state is not None:  # before the EMA copies the head
            try:
                self.head.load_state_dict(head_state)
            except RuntimeError as e:
                raise ValueError(f"objective.init.head: the probe's head does not fit this classifier (objective."
                                 f"num_heads = {num_heads}; the probe's queries, depth and MLP must be the pooler's "
                                 f"defaults): {str(e).splitlines()[0]}") from e
        self.num_classes, self.label_smoothing = num_classes, label_smoothing
        self.mix = mix  # a plain attribute: no weights
        # A child, so checkpoints hold it and a resumed run averages on from where it stopped.
        self.ema = ModelEmaV3(self.classifier(), decay=ema) if ema > 0 else None
        if self.ema is not None:
            self.ema.requires_grad_(False)

    @classmethod
    def from_config(cls, cfg: Config) -> "Supervised":
        obj: SupervisedConfig = cfg.objective  # type: ignore[assignment]
        encoder = build_encoder(cfg.model)
        # A run that resumes takes its encoder and head from its own checkpoint, which the engine loads
        # next: the files it started from are not read again, and may be gone.
        resuming = cfg.latest_checkpoint.is_file()
        if resuming and (obj.init.checkpoint is not None or obj.init.head is not None):
            logger.info("resuming: the encoder and head come from %s, not from objective.init", cfg.latest_checkpoint)
        elif obj.init.checkpoint is not None:
            from vjm.eval.frozen import load_encoder_weights  # vjm.eval imports the objectives

            info = load_encoder_weights(encoder, cfg.model, obj.init.checkpoint, obj.init.encoder)
            logger.info("encoder initialised from %s (%s objective, %r, step %s)", info.checkpoint, info.objective,
                        info.which, info.step)
        head_state = None
        if obj.init.head is not None and not resuming:
            head_state = probe_head(obj.init.head, encoder, obj.num_classes)
        mix = None
        if obj.mixing:
            mix = ClipMixup(obj.num_classes, obj.mixup, obj.cutmix, obj.mix_prob, obj.mix_switch_prob,
                            obj.label_smoothing)
        return cls(encoder, obj.num_classes, obj.label_smoothing, obj.head, obj.num_heads, mix, obj.ema, head_state)

    def classifier(self) -> nn.ModuleDict:
        """The trained encoder and head, as the EMA copies them."""
        return nn.ModuleDict({"encoder": self.encoder, "head": self.head})

    def logits(self, clips: torch.Tensor, use_ema: bool = True) -> torch.Tensor:
        """B x C x T x H x W clips -> B x num_classes logits (fp32), by the EMA weights when there are."""
        model = self.ema.module if use_ema and self.ema is not None else self.classifier()
        return model["head"](model["encoder"](clips)).float()

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        clips, labels = batch["clip"], batch["label"]
        if not labels.is_cuda and labels.numel() and int(labels.max()) >= self.num_classes:
            raise ValueError(f"a label is {int(labels.max())} but objective.num_classes = {self.num_classes}; "
                             f"raise it to at least {int(labels.max()) + 1}")
        targets = None
        if self.mix is not None and self.training:
            # A sample's clips are mixed with its neighbour's; a batch without "index" has one clip per sample.
            clips_per_sample = clips.shape[0] // len(batch["index"]) if "index" in batch else 1
            clips, targets = self.mix(clips, labels, clips_per_sample)
        tokens = self.encoder(clips)
        logits = self.head(tokens).float()
        if targets is not None:  # soft targets, label smoothing folded in
            loss = SoftTargetCrossEntropy()(logits, targets)
        else:
            loss = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
        if self.regularizers:
            term, values = self.regularizers(tokens=tokens)
            loss = loss + term
        else:
            values = {}
        # Against each clip's own label (under mixing, the label of only a share of the clip).
        accuracy = (logits.argmax(dim=-1) == labels).float().mean()
        return loss, {"loss": loss.detach(), "top1": 100 * accuracy.detach(), **values}

    def after_optimizer_step(self, progress: float) -> dict[str, float]:
        if self.ema is not None:
            self.ema.update(self.classifier())
        return {}
