"""The depthwise causal convolution + SiLU in torch (F.conv1d): the reference that defines the
operator (semantics in conv.py), and the check of its input shapes that every backend shares."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def causal_conv1d_silu_torch(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                             reverse: bool = False) -> torch.Tensor:
    taps, length = weight.shape[-1], x.shape[-1]
    if reverse:  # causal over the reversed sequence == anti-causal with the kernel flipped
        out = F.conv1d(x, weight.flip(-1).unsqueeze(1), bias, padding=taps - 1, groups=x.shape[1])
        return F.silu(out[..., taps - 1 : taps - 1 + length])
    out = F.conv1d(x, weight.unsqueeze(1), bias, padding=taps - 1, groups=x.shape[1])
    return F.silu(out[..., :length])


def check_conv_shapes(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
    """A ValueError that names the tensor whose shape does not fit x."""
    if x.dim() != 3:
        raise ValueError(f"causal_conv1d_silu: x must be (batch, E, L), got shape {tuple(x.shape)}")
    if weight.dim() != 2 or weight.shape[0] != x.shape[1]:
        raise ValueError(f"causal_conv1d_silu: weight must be (E, K) = ({x.shape[1]}, K) for x of shape "
                         f"{tuple(x.shape)}, got {tuple(weight.shape)}")
    if bias is not None and tuple(bias.shape) != (x.shape[1],):
        raise ValueError(f"causal_conv1d_silu: bias must have shape ({x.shape[1]},), got {tuple(bias.shape)}")
