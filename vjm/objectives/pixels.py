"""Pixel targets of reconstruction objectives (MAE; ARM's too): each token's own pixels, per-patch
normalised.

A token covers ``tubelet`` frames x ``patch`` x ``patch`` pixels of a clip, except in an image:
the patch embedding repeats its one frame to fill a tubelet, so an image token's own pixels are
that one frame's patch, not its repeats. Pixels are laid out per token as (C, frames, patch,
patch), flattened.

Normalisation (``norm_pix``), as each paper does it:
  images: MAE's, the mean and variance over all of a patch's pixels and channels;
  video:  VideoMAE's, per channel over a tubelet's pixels.
Both divide by sqrt(var + 1e-6) with the unbiased variance (MAE's form).

The targets are computed from the clip as the model sees it, i.e. after the data pipeline's
ImageNet mean/std normalisation. Per-channel normalisation is unchanged by it (it is affine per
channel); MAE's image normalisation, as in MAE's own code, is taken over those values too.
"""

from __future__ import annotations

import torch
from einops import rearrange

NORM_EPS = 1e-6


def frames_per_token(num_frames: int, tubelet_size: int) -> int:
    """Frames of a clip that one token covers: a tubelet, or all of a clip shorter than one (an image)."""
    return tubelet_size if num_frames >= tubelet_size else num_frames


def token_pixels(in_chans: int, frames_per_clip: int, patch_size: int, tubelet_size: int) -> int:
    """Pixel values of one token's target: channels x its own frames x patch x patch."""
    return in_chans * frames_per_token(frames_per_clip, tubelet_size) * patch_size * patch_size


def patchify(clip: torch.Tensor, patch_size: int, tubelet_size: int) -> torch.Tensor:
    """(B, C, T, H, W) -> (B, N, C, frames x patch x patch): each token's own pixels, tokens in raster order."""
    if clip.dim() != 5:
        raise ValueError(f"patchify: expected a clip (B, C, T, H, W), got shape {tuple(clip.shape)}")
    _, _, frames, height, width = clip.shape
    pt = frames_per_token(frames, tubelet_size)
    if frames % pt or height % patch_size or width % patch_size:
        raise ValueError(f"patchify: a clip of {frames} x {height} x {width} (T x H x W) does not split into "
                         f"tokens of {pt} x {patch_size} x {patch_size}; use multiples of the tubelet and patch size")
    return rearrange(clip, "b c (t pt) (h ph) (w pw) -> b (t h w) c (pt ph pw)", pt=pt, ph=patch_size, pw=patch_size)


def unpatchify(patches: torch.Tensor, grid: tuple[int, int, int], patch_size: int) -> torch.Tensor:
    """The inverse of patchify: (B, N, C, frames x patch x patch) -> (B, C, T, H, W)."""
    t, h, w = grid
    return rearrange(patches, "b (t h w) c (pt ph pw) -> b c (t pt) (h ph) (w pw)",
                     t=t, h=h, w=w, ph=patch_size, pw=patch_size)


def patch_statistics(patches: torch.Tensor, per_channel: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, std) of each token's pixels (B, N, C, P), broadcastable to it: over (C, P), or over P
    for each channel. std = sqrt(unbiased var + 1e-6)."""
    dims = (-1,) if per_channel else (-2, -1)
    mean = patches.mean(dim=dims, keepdim=True)
    std = (patches.var(dim=dims, keepdim=True) + NORM_EPS).sqrt()
    return mean, std


def pixel_targets(clip: torch.Tensor, patch_size: int, tubelet_size: int, norm_pix: bool = True) -> torch.Tensor:
    """(B, C, T, H, W) -> (B, N, C x frames x patch x patch) in fp32: each token's pixels, per-patch
    normalised when ``norm_pix`` (per channel for video, over the whole patch for images)."""
    patches = patchify(clip.float(), patch_size, tubelet_size)
    if norm_pix:
        mean, std = patch_statistics(patches, per_channel=clip.shape[2] > 1)  # video: per channel
        patches = (patches - mean) / std
    return patches.flatten(2)


def check_pixels_per_token(objective: str, predicted: int, targets: int, frames: int) -> None:
    """A decoder built for images (one frame's patch) cannot take video, nor the other way round."""
    if predicted != targets:
        raise ValueError(f"{objective}: the decoder predicts {predicted} pixel values per token, but tokens of this "
                         f"{frames}-frame clip hold {targets}: it was built for "
                         f"{'images' if predicted < targets else 'video'}; feed clips of the "
                         "data.frames_per_clip it was trained with")
