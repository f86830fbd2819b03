"""MAE (images) and VideoMAE (video): reconstruct the pixels of masked tokens from the visible ones.

The encoder sees only the visible tokens (the ``keep`` path, in raster order, as V-JEPA's context
encoder). A light attention decoder takes them, projected to its width, merged by position with a
learned mask token at every masked position, all with fixed 3D sin-cos positions, and predicts
each masked token's pixels (vjm.models.Predictor with an attention body and a pixel head). The
loss is the MSE to per-patch-normalised pixels (vjm.objectives.pixels) over masked tokens only.
The encoded visible tokens are exposed to the config's regularisers as ``context``.

A Mamba decoder is not offered: as reported for Mamba predictors, it learns to fill in masked
tokens by itself and starves the encoder of gradient.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn

from vjm.config import AT_LEAST_1, Config, ObjectiveConfig, param
from vjm.models import Predictor, build_encoder
from vjm.models.encoder import gather_tokens

from .base import Objective
from .pictures import reconstruction_grid, to_display
from .pixels import check_pixels_per_token, patch_statistics, patchify, pixel_targets, token_pixels, unpatchify
from .registry import register_objective

# Masks whose context and target MAE can take: the encoder sees the context, the decoder rebuilds
# the target. (Every generator equalises counts over a batch, as the models need.)
MASK_KINDS = ("random", "tube", "clip_row", "frame_row", "multiblock")


@dataclass
class DecoderConfig:
    """MAE's decoder: pre-norm attention blocks over visible and mask tokens (thrown away after pre-training)."""

    width: int = param(512, "decoder width (MAE: 512; VideoMAE: 384 or the encoder's)", range=AT_LEAST_1)
    depth: int = param(8, "decoder blocks (MAE: 8; VideoMAE: 4)", range=AT_LEAST_1)
    num_heads: int = param(16, "attention heads (must divide the width)", range=AT_LEAST_1)

    def problems(self) -> list[str]:
        if self.width % self.num_heads:
            return [f"'objective.decoder.width' = {self.width} is not divisible by 'objective.decoder.num_heads' = "
                    f"{self.num_heads}"]
        return []


@dataclass
class MAEConfig(ObjectiveConfig):
    """Masked autoencoding of pixels."""

    needs_masks = True
    # MAE's images: 75% of the tokens at random. Video configs set VideoMAE's {kind: tube, ratio: 0.9}.
    default_masks = ({"kind": "random", "ratio": 0.75},)

    name: str = param("mae", "pre-training objective; its own keys are documented in vjm/objectives/<name>.py")
    norm_pix: bool = param(True, "targets are per-patch normalised pixels (MAE's norm_pix_loss; per channel for "
                           "video, as VideoMAE); false = the clip's pixels as the model sees them")
    decoder: DecoderConfig = field(default_factory=DecoderConfig)

    def cross_check(self, cfg: Config) -> list[str]:
        errors = self.decoder.problems()
        for i, spec in enumerate(cfg.masks or []):
            if isinstance(spec, dict) and spec.get("kind") not in MASK_KINDS:
                errors.append(f"'masks' item {i}: objective 'mae' does not take mask kind {spec.get('kind')!r}; "
                              f"use one of {', '.join(MASK_KINDS)}")
        return errors


@register_objective("mae", MAEConfig)
class MAE(Objective):
    encoders = ("encoder",)
    eval_encoder = "encoder"

    def __init__(self, encoder: nn.Module, decoder: Predictor, norm_pix: bool = True):
        super().__init__()
        self.encoder, self.decoder, self.norm_pix = encoder, decoder, norm_pix
        self.patch_size = encoder.patch_embed.patch_size
        self.tubelet_size = encoder.patch_embed.tubelet_size

    @classmethod
    def from_config(cls, cfg: Config) -> "MAE":
        obj: MAEConfig = cfg.objective  # type: ignore[assignment]
        encoder = build_encoder(cfg.model)
        embed = encoder.patch_embed
        out_dim = token_pixels(embed.in_chans, cfg.data.frames_per_clip, embed.patch_size, embed.tubelet_size)
        decoder = Predictor(encoder.embed_dim, width=obj.decoder.width, depth=obj.decoder.depth, kind="attention",
                            num_heads=obj.decoder.num_heads, num_mask_tokens=1, out_dim=out_dim)
        return cls(encoder, decoder, norm_pix=obj.norm_pix)

    def targets(self, clip: torch.Tensor) -> torch.Tensor:
        """(B, N, P) fp32 pixel targets of every token, checked against what the decoder predicts."""
        targets = pixel_targets(clip, self.patch_size, self.tubelet_size, self.norm_pix)
        check_pixels_per_token("MAE", self.decoder.proj.out_features, targets.shape[-1], clip.shape[2])
        return targets

    def predict(self, clip: torch.Tensor, visible: torch.Tensor, masked: torch.Tensor):
        """-> (predicted pixels of the ``masked`` tokens (B, Km, P), the encoded ``visible`` tokens (B, Kv, D))."""
        grid = self.encoder.patch_embed.grid(clip.shape)
        encoded = self.encoder(clip, keep=visible)
        return self.decoder(encoded, visible, masked, grid), encoded

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        clip, masks = batch["clip"], batch["masks"]
        with torch.no_grad():
            targets = self.targets(clip)
        errors, exposed = [], []
        for visible, masked in masks:
            pred, encoded = self.predict(clip, visible, masked)
            # Masked tokens only: the visible ones are the input, copying them teaches nothing.
            errors.append((pred.float() - gather_tokens(targets, masked)).square().mean())
            exposed.append({"context": encoded})
        mse = torch.stack(errors).mean()
        term, regularizer_metrics = self.regularizers.average(exposed)
        loss = mse + term
        metrics = {"mse": mse.detach(), **regularizer_metrics}
        if len(errors) > 1:
            metrics.update({f"mse_mask{i}": error.detach() for i, error in enumerate(errors)})
        return loss, {"loss": loss.detach(), **metrics}

    @torch.no_grad()
    def reconstruct(self, clip: torch.Tensor, visible: torch.Tensor, masked: torch.Tensor):
        """-> (input, masked input, reconstruction) as displayable clips (B, 3, T, H, W) in [0, 1].

        The reconstruction is the visible tokens' own pixels plus the predicted masked ones; with
        ``norm_pix`` the predictions are brought back to pixels with the statistics of the true patch
        (as VideoMAE's pictures do), so the picture shows structure, not the patch's mean colour.
        Tokens that are neither (dropped to equalise a batch) stay blank (the dataset's mean colour).
        """
        grid = self.encoder.patch_embed.grid(clip.shape)
        patches = patchify(clip.float(), self.patch_size, self.tubelet_size)  # (B, N, C, P)
        batch, _, chans, pixels = patches.shape
        pred = self.predict(clip, visible, masked)[0].float().view(batch, -1, chans, pixels)
        if self.norm_pix:
            mean, std = patch_statistics(patches, per_channel=clip.shape[2] > 1)
            pred = pred * _gather(std, masked) + _gather(mean, masked)

        def place(*parts: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
            canvas = torch.zeros_like(patches)
            for index, values in parts:
                canvas.scatter_(1, index[:, :, None, None].expand(-1, -1, chans, pixels), values)
            return to_display(unpatchify(canvas, grid, self.patch_size))

        shown = (visible, _gather(patches, visible))
        return to_display(unpatchify(patches, grid, self.patch_size)), place(shown), place(shown, (masked, pred))

    @torch.no_grad()
    def images(self, batch: dict, num: int = 4) -> dict[str, torch.Tensor]:
        """The first ``num`` clips of the batch with their first mask: input, mask, reconstruction."""
        visible, masked = batch["masks"][0]
        views = self.reconstruct(batch["clip"][:num], visible[:num], masked[:num])
        return {"reconstruction": reconstruction_grid(dict(zip(("input", "masked", "reconstruction"), views)))}


def _gather(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """values (B, N, ...) at index (B, K) -> (B, K, ...)."""
    shape = index.shape + values.shape[2:]
    return values.gather(1, index.view(*index.shape, *[1] * (values.dim() - 2)).expand(shape))
