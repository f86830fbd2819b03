"""MFD: masked feature distillation from a frozen vjm teacher (seed 004; UMT / VideoMamba's variant).

The teacher (vjm.objectives.teacher) is the frozen encoder of another vjm run; it sees the whole
clip, without gradients, in eval mode (bf16 autocast on CUDA). The student is any vjm encoder and
sees only the visible tokens (the ``keep`` path, raster order). Two targets, chosen by ``target``:

    distill   MaskDistill / seed 004: a light attention decoder (4 x 512; vjm.models.Predictor, as
              MAE's) takes the visible tokens merged by position with mask tokens and predicts the
              teacher's tokens at the masked positions, layer-normed without affine; smooth-L1.
    align     UMT / VideoMamba: the student's visible tokens, projected to the teacher's width and
              layer-normed, are aligned with the teacher's tokens at the same positions by
              2 - 2 cos (each token's cosine similarity, averaged).

Masks come from the config's ``masks`` (random, tube, rows: seed 004 uses 0.5 / 0.6 on images, UMT
0.8 on video). With ``attentive: true`` a mask fixes only how many tokens stay visible, and which
is drawn in proportion to the teacher's saliency (vjm.masks.attentive, vjm.objectives.saliency):
attention of a pooled query for a ViT teacher, dissimilarity to the clip's mean token for a Mamba
one. The logged ``saliency_kept`` is the teacher's saliency on the visible tokens relative to their
share of the tokens (1 = chance). The student's visible tokens are exposed to the config's
regularisers as ``context``; SLWS (vjm.regularizers.slws) shuffles the student, never the teacher.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from vjm.config import POSITIVE, Config, ConfigError, ObjectiveConfig, param
from vjm.masks.attentive import attentive_split
from vjm.models import Predictor, build_encoder
from vjm.models.encoder import gather_tokens

from .base import Objective
from .mae import DecoderConfig
from .registry import register_objective
from .saliency import SALIENCIES, resolve_saliency, teacher_tokens
from .teacher import (GRID_MATCHES, TeacherRecord, check_grids, config_grid_problem, load_teacher, match_grid,
                      saved_model_section)

logger = logging.getLogger(__name__)

TARGETS = ("distill", "align")


@dataclass
class TeacherConfig:
    """The frozen encoder whose tokens the student learns to produce."""

    checkpoint: str | None = param(None, "a vjm checkpoint (latest.pt of any objective) or an exported encoder "
                                         "(python -m vjm.export); required")
    which: str | None = param(None, "which encoder of the checkpoint's objective; None = the one it evaluates by "
                                    "default (V-JEPA: target_encoder; MAE, supervised: encoder)")


@dataclass
class MFDConfig(ObjectiveConfig):
    """Masked feature distillation from a frozen teacher."""

    needs_masks = True
    default_masks = ({"kind": "random", "ratio": 0.5},)  # seed 004's base size, images

    name: str = param("mfd", "pre-training objective; its own keys are documented in vjm/objectives/<name>.py")
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    target: str = param("distill", "distill: a decoder predicts the teacher's masked tokens (MaskDistill, seed "
                        "004); align: the student's visible tokens match the teacher's (UMT)", choices=TARGETS)
    attentive: bool = param(False, "draw the visible tokens in proportion to the teacher's saliency; each mask "
                            "then fixes only how many stay visible")
    saliency: str = param("auto", "attentive masks' saliency: attention (a ViT teacher's pooled query), "
                          "dissimilarity (1 - cos to the clip's mean token, any teacher); auto = attention for a "
                          "ViT teacher, else dissimilarity", choices=SALIENCIES)
    temperature: float = param(1.0, "attentive masks draw visible tokens in proportion to saliency^(1 / "
                               "temperature): lower keeps the salient ones more surely", range=POSITIVE)
    grid_match: str = param("same", "teacher and student token grids: same (else an error), or pool (the "
                            "teacher's tokens averaged over each student token; its grid a whole multiple)",
                            choices=GRID_MATCHES)
    smooth_l1_beta: float = param(2.0, "distill: the smooth-L1 loss's beta (MaskDistill: 2)", range=POSITIVE)
    # The distill target's decoder, MAE's (pre-norm attention blocks), at seed 004's 4 x 512.
    decoder: DecoderConfig = field(default_factory=lambda: DecoderConfig(width=512, depth=4, num_heads=8))

    def cross_check(self, cfg: Config) -> list[str]:
        errors = []
        if self.teacher.checkpoint is None:
            errors.append("'objective.teacher.checkpoint' is not set: MFD distils a trained vjm encoder; give its "
                          "checkpoint (e.g. runs/mae_tiny/latest.pt after python -m launch.local --fname "
                          "configs/mae_tiny.yaml --devices cpu)")
        errors += self.decoder.problems() if self.target == "distill" else []
        return errors + self.grid_problems(cfg)

    def grid_problems(self, cfg: Config) -> list[str]:
        """The teacher's token grid against the student's, when the teacher file is there to read."""
        from vjm.masks import token_grid

        saved = saved_model_section(self.teacher.checkpoint) if self.teacher.checkpoint else None
        if saved is None:
            return []
        d, m = cfg.data, cfg.model
        try:
            student_grid = token_grid(d.frames_per_clip, d.crop_size, m.patch_size, m.tubelet_size)
        except ValueError:
            return []  # the general checks name the crop or frames that do not divide
        problem = config_grid_problem(saved, d.frames_per_clip, d.crop_size, student_grid, self.grid_match)
        return [f"objective 'mfd': {problem}"] if problem else []


class AlignHead(nn.Module):
    """UMT's student head: tokens projected to the teacher's width, then layer-normed."""

    def __init__(self, dim: int, teacher_dim: int):
        super().__init__()
        self.proj = nn.Linear(dim, teacher_dim)
        self.norm = nn.LayerNorm(teacher_dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(tokens))


def cosine_distance(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """2 - 2 cos(pred, target) per token, averaged (UMT's alignment loss; 0 when aligned, 4 when opposed)."""
    return (2.0 - 2.0 * F.cosine_similarity(pred.float(), target.float(), dim=-1)).mean()


def teacher_precision(clip: torch.Tensor):
    """bf16 autocast for the teacher's forward on CUDA, whatever the step's precision; as is on the CPU."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if clip.is_cuda else contextlib.nullcontext()


@register_objective("mfd", MFDConfig)
class MFD(Objective):
    encoders = ("encoder",)  # the teacher is not in the checkpoint: it is evaluated from its own
    eval_encoder = "encoder"

    def __init__(self, encoder: nn.Module, teacher: nn.Module, record: TeacherRecord, target: str = "distill",
                 decoder: Predictor | None = None, attentive: bool = False, saliency: str = "dissimilarity",
                 temperature: float = 1.0, smooth_l1_beta: float = 2.0):
        super().__init__()
        if target not in TARGETS:
            raise ValueError(f"MFD: target must be one of {TARGETS}, got {target!r}")
        self.encoder = encoder
        self.teacher = teacher.eval().requires_grad_(False)
        self.teacher_record = record
        self.target = target
        if target == "distill":
            if decoder is None:
                raise ValueError("MFD: the distill target needs a decoder")
            self.decoder = decoder
        else:
            self.projector = AlignHead(encoder.embed_dim, teacher.embed_dim)
        self.attentive, self.saliency, self.temperature = attentive, saliency, temperature
        self.smooth_l1_beta = smooth_l1_beta

    @classmethod
    def from_config(cls, cfg: Config) -> "MFD":
        from vjm.masks import token_grid

        obj: MFDConfig = cfg.objective  # type: ignore[assignment]
        teacher, info = load_teacher(obj.teacher.checkpoint, obj.teacher.which)
        encoder = build_encoder(cfg.model)
        d, m = cfg.data, cfg.model
        student_grid = token_grid(d.frames_per_clip, d.crop_size, m.patch_size, m.tubelet_size)
        clip_shape = (1, encoder.patch_embed.in_chans, d.frames_per_clip, d.crop_size, d.crop_size)
        check_grids(teacher, clip_shape, student_grid, obj.grid_match)
        try:
            saliency = resolve_saliency(obj.saliency, teacher) if obj.attentive else obj.saliency
        except ValueError as e:
            raise ConfigError(f"objective 'mfd': {e}") from None
        decoder = None
        if obj.target == "distill":
            dec = obj.decoder
            decoder = Predictor(encoder.embed_dim, width=dec.width, depth=dec.depth, kind="attention",
                                num_heads=dec.num_heads, num_mask_tokens=1, out_dim=teacher.embed_dim)
        logger.info("MFD teacher: %s (%s objective, %r, %s, width %d, step %s, fingerprint %s)", info.checkpoint,
                    info.objective, info.which, info.model, info.embed_dim, info.step, info.fingerprint)
        return cls(encoder, teacher, TeacherRecord(info.fingerprint, str(info.checkpoint)), obj.target, decoder,
                   obj.attentive, saliency, obj.temperature, obj.smooth_l1_beta)

    def train(self, mode: bool = True):
        super().train(mode)
        self.teacher.eval()  # no drop path, no SLWS, whatever the student does
        return self

    def checkpoint_modules(self) -> dict[str, nn.Module]:
        return {name: module for name, module in self.named_children() if name != "teacher"}

    @torch.no_grad()
    def targets(self, clip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """-> (the teacher's tokens on the student's grid (B, N, Dt) in fp32, layer-normed without affine
        for distill; the saliency of each token (B, N), or None without attentive masks)."""
        with teacher_precision(clip):
            tokens, saliency = teacher_tokens(self.teacher, clip, self.saliency if self.attentive else None)
        teacher_grid = self.teacher.patch_embed.grid(clip.shape)
        student_grid = self.encoder.patch_embed.grid(clip.shape)
        tokens = match_grid(tokens.float(), teacher_grid, student_grid)
        if saliency is not None:
            saliency = match_grid(saliency.float()[..., None], teacher_grid, student_grid)[..., 0]
        if self.target == "distill":
            tokens = F.layer_norm(tokens, tokens.shape[-1:])
        return tokens, saliency

    def distance(self, clip: torch.Tensor, targets: torch.Tensor, visible: torch.Tensor, masked: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (this mask's loss, the student's encoded visible tokens)."""
        encoded = self.encoder(clip, keep=visible)
        if self.target == "distill":
            grid = self.encoder.patch_embed.grid(clip.shape)
            pred = self.decoder(encoded, visible, masked, grid)
            # Masked tokens only: the student sees the visible ones.
            loss = F.smooth_l1_loss(pred.float(), gather_tokens(targets, masked), beta=self.smooth_l1_beta)
        else:
            loss = cosine_distance(self.projector(encoded), gather_tokens(targets, visible))
        return loss, encoded

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        clip, masks = batch["clip"], batch["masks"]
        targets, saliency = self.targets(clip)
        losses, kept, exposed = [], [], []
        for visible, masked in masks:
            if saliency is not None:
                visible, masked = attentive_split(saliency, visible.shape[1], self.temperature)
                share = saliency.gather(1, visible).sum(dim=1) / saliency.sum(dim=1).clamp_min(1e-12)
                kept.append((share * saliency.shape[1] / visible.shape[1]).mean())
            loss, encoded = self.distance(clip, targets, visible, masked)
            losses.append(loss)
            exposed.append({"context": encoded})
        distance = torch.stack(losses).mean()
        term, regularizer_metrics = self.regularizers.average(exposed)
        loss = distance + term
        name = "smooth_l1" if self.target == "distill" else "cos_distance"
        metrics = {name: distance.detach(), **regularizer_metrics}
        if kept:
            metrics["saliency_kept"] = torch.stack(kept).mean().detach()
        if len(losses) > 1:
            metrics.update({f"{name}_mask{i}": value.detach() for i, value in enumerate(losses)})
        return loss, {"loss": loss.detach(), **metrics}


__all__ = ["MFD", "MFDConfig", "cosine_distance"]
