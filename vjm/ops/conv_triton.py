"""The depthwise causal convolution + SiLU (see conv.py) as Triton kernels, behind vjm's signature.

The kernels read x in its own layout (time contiguous, any batch and channel strides), write the
output in that layout, and recompute the convolution in the backward instead of saving it. They
run on CUDA tensors, and on CPU tensors only under Triton's interpreter (TRITON_INTERPRET=1).
"""

from __future__ import annotations

import torch

from .backends import interpreting
from .conv_torch import check_conv_shapes
from .grid import cdiv, next_pow2, segments
from .layout import in_layout_of, time_contiguous

BLOCK_E, BLOCK_L = 16, 128
# The backward's programs each walk a run of position blocks, reusing one scratch window; runs are
# cut until there are about this many programs (batch x channel blocks x runs).
BWD_TARGET_PROGRAMS = 2048


def conv_forward(x, weight, bias, reverse):
    """silu(conv(x)) through the Triton kernel, in x's layout (x time contiguous, weight (E, K) contiguous)."""
    from .conv_triton_kernels import conv_silu_fwd_kernel  # triton is optional: imported when used

    out = torch.empty_like(x)
    conv_silu_fwd_kernel[_grid(x)](
        x, weight, x if bias is None else bias, out, x.shape[1], x.shape[2], x.stride(0), x.stride(1),
        K=weight.shape[1], BLOCK_E=BLOCK_E, BLOCK_L=BLOCK_L, HAS_BIAS=bias is not None, REVERSE=bool(reverse),
    )
    return out


def conv_backward(x, weight, bias, reverse, dout):
    """(dx, dweight, dbias) for conv_forward's inputs, recomputing the convolution."""
    from .conv_triton_kernels import conv_silu_bwd_kernel

    dout = in_layout_of(dout, x)
    batch, dim, length = x.shape
    taps = weight.shape[1]
    e_blocks = _grid(x)[0]
    run_len, runs = segments(length, e_blocks * batch, BLOCK_L, BWD_TARGET_PROGRAMS)  # whole blocks
    halo = next_pow2(taps - 1)
    f32 = dict(device=x.device, dtype=torch.float32)
    dx = torch.empty_like(x)
    dw = torch.empty(batch * runs, dim, taps, **f32)
    dbias = torch.empty(batch * runs, dim, **f32) if bias is not None else None
    scratch = torch.empty(batch * e_blocks * runs * BLOCK_E * (BLOCK_L + 2 * halo), **f32)
    conv_silu_bwd_kernel[(e_blocks, batch, runs)](
        x, weight, x if bias is None else bias, dout, dx, dw, dw if dbias is None else dbias, scratch,
        dim, length, x.stride(0), x.stride(1), run_len // BLOCK_L,
        K=taps, KP=next_pow2(taps), HALO=halo, BLOCK_E=BLOCK_E, BLOCK_L=BLOCK_L, HAS_BIAS=bias is not None,
        REVERSE=bool(reverse),
    )
    return dx, dw.sum(0), None if dbias is None else dbias.sum(0)  # fp32; autograd casts to the inputs' dtypes


def prepare(x, weight, bias):
    """The inputs in layouts the kernels read (copies only of what is in none of them)."""
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
    return (cdiv(dim, BLOCK_E), batch, cdiv(length, BLOCK_L))


def causal_conv1d_silu_triton(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                              reverse: bool = False) -> torch.Tensor:
    """The Triton kernels, also on CPU tensors under Triton's interpreter (TRITON_INTERPRET=1)."""
    check_conv_shapes(x, weight, bias)
    if not (x.is_cuda or interpreting()):
        raise ValueError(f"causal_conv1d_silu_triton: x is on {x.device}; the kernels need CUDA tensors "
                         "(or TRITON_INTERPRET=1, set before triton is imported, to run them on the CPU)")
    return CausalConvSiluTriton.apply(x, weight, bias, reverse)
