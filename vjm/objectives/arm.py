"""ARM: autoregressive pre-training of a causal Mamba encoder, cluster by cluster (seed 003).

The clip's tokens (patch embedding + fixed 3D sin-cos positions, added in raster order) are
regrouped into clusters of k x k patches (vjm.models.clusters: one tubelet slice each, ordered
(t, cluster row, cluster column), patches row-major inside; at T' = 1 exactly ARM's order). The
encoder, one causal scan (``scan: uni``, e.g. ``mambamlp_base``), reads the first n - 1 clusters
in that order. The decoder (vjm.models.ClusterDecoder) predicts the pixels of clusters 2..n: its
queries cross-attend to layer-normed outputs of several encoder depths under a block-causal mask,
so the query of a token of cluster j sees the encoded tokens of clusters before j only, never its
own cluster or later ones (the encoder, being causal, leaks nothing either). The loss is the MSE
to per-patch-normalised pixels (vjm.objectives.pixels, MAE's and ARM's targets).

The deepest tap is the encoder's own output (its final norm), so that every encoder weight is
trained and an evaluation of the encoder reads features the decoder read. The encoded tokens are
exposed to the config's regularisers as ``context``.

Fine-tuning reads tokens in raster order with more scans: vjm.models.expand_uni_state_dict
initialises every direction of a quad-scan model from the one pre-trained direction, as ARM does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn

from vjm.config import AT_LEAST_1, Config, ObjectiveConfig, param
from vjm.models import build_encoder, sincos_3d
from vjm.models.cluster_decoder import ClusterDecoder
from vjm.models.clusters import from_clusters, num_clusters, to_clusters

from .base import Objective
from .pictures import reconstruction_grid, to_display
from .pixels import check_pixels_per_token, patch_statistics, patchify, pixel_targets, token_pixels, unpatchify
from .registry import register_objective


def default_taps(depth: int) -> list[int]:
    """ARM's decoder inputs: 4 blocks spread over the encoder's second half (6/8/10/12 of 12, 12/16/20/24
    of 24), the last block included; fewer, without repeats, for encoders of under 6 blocks."""
    return sorted({-(-depth * (3 + i) // 6) for i in range(4)})


def block_causal_mask(clusters: int, per_cluster: int, device=None) -> torch.Tensor:
    """(Q, K) bool, True = may attend: queries are the tokens of clusters 2..n, keys the encoded tokens
    of clusters 1..n-1, and a query sees the keys of the clusters before its own only."""
    query_cluster = torch.arange(1, clusters, device=device).repeat_interleave(per_cluster)
    key_cluster = torch.arange(clusters - 1, device=device).repeat_interleave(per_cluster)
    return key_cluster[None, :] < query_cluster[:, None]


def causal_problem(encoder: nn.Module) -> str | None:
    """Why ``encoder`` cannot be ARM's (it must read a sequence strictly forward), or None."""
    if getattr(encoder, "scan", None) != "uni":
        kind = f"scan {encoder.scan!r}" if hasattr(encoder, "scan") else type(encoder).__name__
        return (f"ARM needs a causal encoder, one forward scan (a Mamba model with scan 'uni', such as "
                f"mambamlp_tiny / mambamlp_base / mambamlp_large), but this one is {kind}: any other scan or "
                "attention lets a token see the clusters it must predict")
    if encoder.cls_token is not None:
        return "ARM's encoder takes no cls token (it would have to lead every cluster); build it without one"
    return None


@dataclass
class ARMDecoderConfig:
    """ARM's decoder: cross-attention-only blocks over several encoder depths (dropped after pre-training)."""

    width: int = param(512, "decoder width (ARM: 512)", range=AT_LEAST_1)
    depth: int = param(4, "decoder blocks (ARM: 4)", range=AT_LEAST_1)
    num_heads: int = param(8, "attention heads (ARM: width / 64); must divide the width", range=AT_LEAST_1)
    taps: list[int] = param([], "encoder blocks (counted from 1) whose layer-normed outputs are the decoder's keys "
                            "and values; [] = ARM's: 4 over the second half (6/8/10/12 of 12, 12/16/20/24 of 24)",
                            range=AT_LEAST_1)


@dataclass
class ARMConfig(ObjectiveConfig):
    """Autoregressive prediction of the next cluster's pixels."""

    name: str = param("arm", "pre-training objective; its own keys are documented in vjm/objectives/<name>.py")
    cluster_size: int = param(4, "side of a cluster in patches: the k x k patches of one tubelet slice are one "
                              "prediction unit (ARM: 4, i.e. 64 px, 9 clusters per 192 px image)", range=AT_LEAST_1)
    norm_pix: bool = param(True, "targets are per-patch normalised pixels (per channel for video); false = the "
                           "clip's pixels as the model sees them")
    decoder: ARMDecoderConfig = field(default_factory=ARMDecoderConfig)

    def cross_check(self, cfg: Config) -> list[str]:
        errors = []
        d, k = self.decoder, self.cluster_size
        if d.width % d.num_heads:
            errors.append(f"'objective.decoder.width' = {d.width} is not divisible by 'objective.decoder.num_heads' "
                          f"= {d.num_heads}")
        grid = _token_grid(cfg)
        if grid is not None:  # else the general checks name the crop or frames that do not divide
            patches = grid[1]
            if patches % k:
                divisors = [n for n in range(1, patches + 1) if patches % n == 0]
                errors.append(f"'objective.cluster_size' = {k} does not divide the {patches} x {patches} patches of a "
                              f"frame ('data.crop_size' / 'model.patch_size'); use one of {divisors}, or a crop of a "
                              f"multiple of {k * cfg.model.patch_size} px")
            elif num_clusters(grid, k) < 2:
                errors.append(f"'objective.cluster_size' = {k} makes the whole clip one cluster: nothing is left to "
                              "predict; use a smaller cluster size")
        encoder = _meta_encoder(cfg)
        if encoder is not None:
            problem = causal_problem(encoder)
            if problem:
                errors.append(f"'model.name' = {cfg.model.name!r}: {problem}")
            depth = len(encoder.stack.blocks) if hasattr(encoder, "stack") else 0
            if depth and any(not 1 <= tap <= depth for tap in d.taps):
                errors.append(f"'objective.decoder.taps' = {d.taps}: the encoder has blocks 1 to {depth}")
        if len(set(d.taps)) != len(d.taps):
            errors.append(f"'objective.decoder.taps' = {d.taps} names a block twice")
        return errors


def _token_grid(cfg: Config) -> tuple[int, int, int] | None:
    from vjm.masks import token_grid

    d, m = cfg.data, cfg.model
    try:
        return token_grid(d.frames_per_clip, d.crop_size, m.patch_size, m.tubelet_size)
    except ValueError:
        return None


def _meta_encoder(cfg: Config) -> nn.Module | None:
    """The config's encoder without its weights (on the meta device: no memory, no time), or None when
    the model section itself is wrong (the general checks say how)."""
    try:
        with torch.device("meta"):
            return build_encoder(cfg.model)
    except (TypeError, ValueError):
        return None


@register_objective("arm", ARMConfig)
class ARM(Objective):
    encoders = ("encoder",)
    eval_encoder = "encoder"
    causal = True

    def __init__(self, encoder: nn.Module, decoder: ClusterDecoder, cluster_size: int, taps: list[int],
                 norm_pix: bool = True):
        super().__init__()
        problem = causal_problem(encoder)
        if problem:
            raise ValueError(problem)
        self.encoder, self.decoder = encoder, decoder
        self.cluster_size, self.taps, self.norm_pix = cluster_size, list(taps), norm_pix
        self.patch_size = encoder.patch_embed.patch_size
        self.tubelet_size = encoder.patch_embed.tubelet_size

    @classmethod
    def from_config(cls, cfg: Config) -> "ARM":
        obj: ARMConfig = cfg.objective  # type: ignore[assignment]
        encoder = build_encoder(cfg.model)
        taps = obj.decoder.taps or default_taps(encoder.stack.depth)
        embed = encoder.patch_embed
        out_dim = token_pixels(embed.in_chans, cfg.data.frames_per_clip, embed.patch_size, embed.tubelet_size)
        d = obj.decoder
        decoder = ClusterDecoder(encoder.embed_dim, len(taps), width=d.width, depth=d.depth, num_heads=d.num_heads,
                                 out_dim=out_dim)
        return cls(encoder, decoder, obj.cluster_size, taps, norm_pix=obj.norm_pix)

    def targets(self, clip: torch.Tensor) -> torch.Tensor:
        """(B, (n - 1) k^2, P) fp32 pixel targets of clusters 2..n, in cluster order."""
        targets = pixel_targets(clip, self.patch_size, self.tubelet_size, self.norm_pix)
        check_pixels_per_token("ARM", self.decoder.head.out_features, targets.shape[-1], clip.shape[2])
        grid = self.encoder.patch_embed.grid(clip.shape)
        return to_clusters(targets, grid, self.cluster_size)[:, 1:].flatten(1, 2)

    def predict(self, clip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (predicted pixels of clusters 2..n (B, (n - 1) k^2, P), the encoded clusters 1..n-1 (B, same, D)),
        both in cluster order."""
        k = self.cluster_size
        tokens, grid = self.encoder.embed(clip, keep=None)  # positions are added before the regrouping
        n = num_clusters(grid, k)
        if n < 2:
            raise ValueError(f"ARM: a clip of token grid {grid} is a single cluster of {k} x {k} patches: there is "
                             "no next cluster to predict; use larger frames or a smaller cluster size")
        context = to_clusters(tokens, grid, k)[:, :-1].flatten(1, 2)
        stack = self.encoder.stack
        inner = [tap for tap in self.taps if tap < stack.depth]
        encoded, streams = stack.forward_with_taps(context, inner)
        by_tap = dict(zip(inner, streams))
        by_tap[stack.depth] = encoded
        positions = sincos_3d(self.decoder.width, grid, clip.device, tokens.dtype)
        query_pos = to_clusters(positions[None], grid, k)[0, 1:].flatten(0, 1)
        attend = block_causal_mask(n, k * k, clip.device)
        return self.decoder([by_tap[tap] for tap in self.taps], query_pos, attend), encoded

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        clip = batch["clip"]
        with torch.no_grad():
            targets = self.targets(clip)
        pred, encoded = self.predict(clip)
        mse = (pred.float() - targets).square().mean()
        loss, metrics = mse, {"mse": mse.detach()}
        if self.regularizers:
            term, values = self.regularizers(context=encoded)
            loss = loss + term
            metrics.update(values)
        return loss, {"loss": loss.detach(), **metrics}

    @torch.no_grad()
    def reconstruct(self, clip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (input, prediction) as displayable clips (B, 3, T, H, W) in [0, 1]: the first cluster as given,
        every later one as predicted from the clusters before it. With ``norm_pix`` predictions are brought
        back to pixels with the true patch's statistics (as MAE's pictures), to show structure."""
        grid, k = self.encoder.patch_embed.grid(clip.shape), self.cluster_size
        patches = patchify(clip.float(), self.patch_size, self.tubelet_size)  # (B, N, C, P), raster order
        batch, _, chans, pixels = patches.shape
        pred = self.predict(clip)[0].float().view(batch, -1, k * k, chans, pixels)
        clusters = to_clusters(patches, grid, k)
        if self.norm_pix:
            mean, std = patch_statistics(clusters[:, 1:], per_channel=clip.shape[2] > 1)
            pred = pred * std + mean
        predicted = from_clusters(torch.cat([clusters[:, :1], pred], dim=1), grid, k)
        return (to_display(unpatchify(patches, grid, self.patch_size)),
                to_display(unpatchify(predicted, grid, self.patch_size)))

    @torch.no_grad()
    def images(self, batch: dict, num: int = 4) -> dict[str, torch.Tensor]:
        """The first ``num`` clips of the batch: input, and each cluster as predicted from those before it."""
        views = self.reconstruct(batch["clip"][:num])
        return {"prediction": reconstruction_grid(dict(zip(("input", "predicted"), views)))}


__all__ = ["ARM", "ARMConfig", "ARMDecoderConfig", "block_causal_mask", "default_taps"]
