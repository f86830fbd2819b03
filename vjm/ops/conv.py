"""`causal_conv1d_silu`: Mamba's depthwise causal convolution followed by SiLU.

    x: (batch, E, L)   weight: (E, K)   bias: (E,) or None
    out[:, e, l] = silu(bias[e] + sum_k weight[e, k] x[:, e, l + k - (K - 1)])   (zero-padded)

With `reverse`, the causal convolution of the time-reversed sequence, returned in the original
order: out[:, e, l] = silu(bias[e] + sum_k weight[e, k] x[:, e, l + K - 1 - k]).

Backends: "torch" (conv_torch.py, F.conv1d, any device, the reference), "triton" (conv_triton.py,
CUDA tensors). Which one runs follows the rule of backends.py.
"""

from __future__ import annotations

import torch

from .backends import Backend, always_usable, resolve_backend, triton_unusable_for
from .conv_torch import causal_conv1d_silu_torch, check_conv_shapes
from .conv_triton import causal_conv1d_silu_triton

# Fastest first: "auto" takes the first usable one.
CONV_BACKENDS: dict[str, Backend] = {
    "triton": Backend(causal_conv1d_silu_triton, triton_unusable_for),
    "torch": Backend(causal_conv1d_silu_torch, always_usable),
}


def causal_conv1d_silu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                       reverse: bool = False, backend: str = "auto") -> torch.Tensor:
    """silu(depthwise causal conv1d(x)); see the module docstring."""
    check_conv_shapes(x, weight, bias)
    fn = CONV_BACKENDS[resolve_backend("causal_conv1d_silu", CONV_BACKENDS, backend, x)].fn
    return fn(x, weight, bias, reverse)
