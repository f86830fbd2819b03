"""`causal_conv1d_silu`: Mamba's depthwise causal convolution followed by SiLU.

    x: (batch, E, L)   weight: (E, K)   bias: (E,) or None
    out[:, e, l] = silu(bias[e] + sum_k weight[e, k] x[:, e, l + k - (K - 1)])   (zero-padded)

With `reverse`, the causal convolution of the time-reversed sequence, returned in the original
order: out[:, e, l] = silu(bias[e] + sum_k weight[e, k] x[:, e, l + K - 1 - k]).

Backends: "torch" (F.conv1d, any device), "triton" (CUDA tensors: reads x in its own layout,
time contiguous, writes the output in that layout, and recomputes the convolution in the
backward instead of saving it). "auto" takes Triton where it can run.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import scan_triton
from .layout import in_layout_of, time_contiguous
from .scan_triton import _cdiv, _pow2, _segments

BLOCK_E, BLOCK_L = 16, 128
# The backward's programs each walk a run of position blocks, reusing one scratch window; runs are
# cut until there are about this many programs (batch x channel blocks x runs).
BWD_TARGET_PROGRAMS = 2048
BACKENDS = ("auto", "triton", "torch")


def causal_conv1d_silu_torch(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                             reverse: bool = False) -> torch.Tensor:
    taps, length = weight.shape[-1], x.shape[-1]
    if reverse:  # causal over the reversed sequence == anti-causal with the kernel flipped
        out = F.conv1d(x, weight.flip(-1).unsqueeze(1), bias, padding=taps - 1, groups=x.shape[1])
        return F.silu(out[..., taps - 1 : taps - 1 + length])
    out = F.conv1d(x, weight.unsqueeze(1), bias, padding=taps - 1, groups=x.shape[1])
    return F.silu(out[..., :length])


def conv_forward(x, weight, bias, reverse):
    """silu(conv(x)) through the Triton kernel, in x's layout (x time contiguous, weight (E, K) contiguous)."""
    from .triton_conv_kernels import conv_silu_fwd_kernel

    out = torch.empty_like(x)
    conv_silu_fwd_kernel[_grid(x)](
        x, weight, x if bias is None else bias, out, x.shape[1], x.shape[2], x.stride(0), x.stride(1),
        K=weight.shape[1], BLOCK_E=BLOCK_E, BLOCK_L=BLOCK_L, HAS_BIAS=bias is not None, REVERSE=bool(reverse),
    )
    return out


def conv_backward(x, weight, bias, reverse, dout):
    """(dx, dweight, dbias) for conv_forward's inputs, recomputing the convolution."""
    from .triton_conv_kernels import conv_silu_bwd_kernel

    dout = in_layout_of(dout, x)
    batch, dim, length = x.shape
    taps = weight.shape[1]
    e_blocks = _grid(x)[0]
    run_len, runs = _segments(length, e_blocks * batch, BLOCK_L, BWD_TARGET_PROGRAMS)  # whole blocks
    halo = _pow2(taps - 1)
    f32 = dict(device=x.device, dtype=torch.float32)
    dx = torch.empty_like(x)
    dw = torch.empty(batch * runs, dim, taps, **f32)
    dbias = torch.empty(batch * runs, dim, **f32) if bias is not None else None
    scratch = torch.empty(batch * e_blocks * runs * BLOCK_E * (BLOCK_L + 2 * halo), **f32)
    conv_silu_bwd_kernel[(e_blocks, batch, runs)](
        x, weight, x if bias is None else bias, dout, dx, dw, dw if dbias is None else dbias, scratch,
        dim, length, x.stride(0), x.stride(1), run_len // BLOCK_L,
        K=taps, KP=_pow2(taps), HALO=halo, BLOCK_E=BLOCK_E, BLOCK_L=BLOCK_L, HAS_BIAS=bias is not None,
        REVERSE=bool(reverse),
    )
    return dx, dw.sum(0), None if dbias is None else dbias.sum(0)  # fp32; autograd casts to the inputs' dtypes


def prepare(x, weight, bias):
    return time_contiguous(x), weight.contiguous(), None if bias is None else bias.contiguous()


class CausalConvSiluTriton(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, reverse):
        x, weight, bias = prepare(x, weight, bias)
        ctx.save_for_backward(x, weight, bias)
        ctx.reverse = bool(reverse)
        return conv_forward(x, weight, bias, reverse)

    @staticmethod
    def backward(ctx, dout):
        return conv_backward(*ctx.saved_tensors, ctx.reverse, dout) + (None,)


def _grid(x: torch.Tensor) -> tuple[int, int, int]:
    batch, dim, length = x.shape
    return (_cdiv(dim, BLOCK_E), batch, _cdiv(length, BLOCK_L))


def _check(x, weight, bias) -> None:
    if x.dim() != 3:
        raise ValueError(f"causal_conv1d_silu: x must be (batch, E, L), got shape {tuple(x.shape)}")
    if weight.dim() != 2 or weight.shape[0] != x.shape[1]:
        raise ValueError(f"causal_conv1d_silu: weight must be (E, K) = ({x.shape[1]}, K) for x of shape "
                         f"{tuple(x.shape)}, got {tuple(weight.shape)}")
    if bias is not None and tuple(bias.shape) != (x.shape[1],):
        raise ValueError(f"causal_conv1d_silu: bias must have shape ({x.shape[1]},), got {tuple(bias.shape)}")


def triton_unusable_for(x: torch.Tensor) -> str | None:
    """Why the Triton kernels cannot run on `x`, or None when they can."""
    if not x.is_cuda:
        return "the Triton kernels run on CUDA tensors only"
    if x.dtype not in scan_triton.SCAN_DTYPES:
        return f"the Triton kernels take float32, bfloat16 or float16 inputs, not {x.dtype}"
    return scan_triton.import_error()


def causal_conv1d_silu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                       reverse: bool = False, backend: str = "auto") -> torch.Tensor:
    """silu(depthwise causal conv1d(x)); see the module docstring."""
    _check(x, weight, bias)
    if backend not in BACKENDS:
        raise ValueError(f"causal_conv1d_silu: unknown backend {backend!r}; choose one of {BACKENDS}")
    if backend == "torch":
        return causal_conv1d_silu_torch(x, weight, bias, reverse)
    reason = triton_unusable_for(x)
    if reason is None:
        return CausalConvSiluTriton.apply(x, weight, bias, reverse)
    if backend == "triton":
        raise RuntimeError(f"causal_conv1d_silu: backend 'triton' was asked for but cannot run here: {reason}")
    return causal_conv1d_silu_torch(x, weight, bias, reverse)


def causal_conv1d_silu_triton(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                              reverse: bool = False) -> torch.Tensor:
    """The Triton kernels, also on CPU tensors under Triton's interpreter (TRITON_INTERPRET=1)."""
    _check(x, weight, bias)
    if not (x.is_cuda or scan_triton.interpreting()):
        raise ValueError(f"causal_conv1d_silu_triton: x is on {x.device}; the kernels need CUDA tensors "
                         "(or TRITON_INTERPRET=1, set before triton is imported, to run them on the CPU)")
    return CausalConvSiluTriton.apply(x, weight, bias, reverse)
