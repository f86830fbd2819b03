"""Triton kernels of the depthwise causal convolution with SiLU (see causal_conv.py).

Tensors are (batch, E, L) with time contiguous and any batch and channel strides; a program
covers one batch element, BLOCK_E channels and BLOCK_L positions. Output position l reads input
positions l + shift(k) for the K taps: shift = k - (K - 1) (causal), or K - 1 - k when REVERSE
(the causal convolution of the time-reversed sequence, with no reversed copy).

The backward recomputes the convolution instead of saving it: the gradient at input position p
gathers dpre(p - shift(j)) over the taps j, each recomputed from K shifted loads of x. The loads
overlap, so they are cache hits; the kernel stays bound by its one pass over x, dout and dx.
"""

import triton
import triton.language as tl

from .triton_math import sigmoid


@triton.jit
def _shift(k: tl.constexpr, K: tl.constexpr, REVERSE: tl.constexpr):
    if REVERSE:
        return K - 1 - k
    return k - (K - 1)


@triton.jit
def _conv_at(x_ptr, rows, w_ptr, e, e_ok, bias, pos, L, K: tl.constexpr, REVERSE: tl.constexpr):
    """The convolution (before SiLU) at positions `pos`, in fp32: (BLOCK_E, BLOCK_L)."""
    acc = tl.zeros((e.shape[0], pos.shape[0]), dtype=tl.float32) + bias[:, None]
    for k in tl.static_range(K):
        src = pos + _shift(k, K, REVERSE)
        mask = e_ok[:, None] & ((src >= 0) & (src < L))[None, :]
        xk = tl.load(x_ptr + rows + src[None, :], mask=mask, other=0.0).to(tl.float32)
        wk = tl.load(w_ptr + e * K + k, mask=e_ok, other=0.0).to(tl.float32)
        acc += wk[:, None] * xk
    return acc


@triton.jit
def _dpre_at(x_ptr, dout_ptr, rows, w_ptr, e, e_ok, bias, pos, L, K: tl.constexpr, REVERSE: tl.constexpr):
    """d loss / d (convolution before SiLU) at positions `pos`; 0 outside the sequence."""
    pre = _conv_at(x_ptr, rows, w_ptr, e, e_ok, bias, pos, L, K, REVERSE)
    mask = e_ok[:, None] & ((pos >= 0) & (pos < L))[None, :]
    dout = tl.load(dout_ptr + rows + pos[None, :], mask=mask, other=0.0).to(tl.float32)
    sig = sigmoid(pre)
    return dout * sig * (1.0 + pre * (1.0 - sig))


@triton.jit
def conv_silu_fwd_kernel(
    x_ptr, w_ptr, bias_ptr, out_ptr, E, L, stride_b, stride_e,
    K: tl.constexpr, BLOCK_E: tl.constexpr, BLOCK_L: tl.constexpr,
    HAS_BIAS: tl.constexpr, REVERSE: tl.constexpr,
):
    e = tl.program_id(0) * BLOCK_E + tl.arange(0, BLOCK_E)
    pos = tl.program_id(2) * BLOCK_L + tl.arange(0, BLOCK_L)
    e_ok = e < E
    rows = tl.program_id(1).to(tl.int64) * stride_b + e.to(tl.int64)[:, None] * stride_e
    bias = tl.zeros((BLOCK_E,), dtype=tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + e, mask=e_ok, other=0.0).to(tl.float32)
    pre = _conv_at(x_ptr, rows, w_ptr, e, e_ok, bias, pos, L, K, REVERSE)
    out = pre * sigmoid(pre)
    mask = e_ok[:, None] & (pos < L)[None, :]
    tl.store(out_ptr + rows + pos[None, :], out.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def conv_silu_bwd_kernel(
    x_ptr, w_ptr, bias_ptr, dout_ptr, dx_ptr, dw_ptr, dbias_ptr, E, L, stride_b, stride_e,
    K: tl.constexpr, BLOCK_E: tl.constexpr, BLOCK_L: tl.constexpr,
    HAS_BIAS: tl.constexpr, REVERSE: tl.constexpr,
):
    """dx, and this program's partial sums of dw (part, E, K) and dbias (part, E), where part
    numbers (batch, position block); the caller adds the parts up."""
    pid_b = tl.program_id(1)
    pid_l = tl.program_id(2)
    e = tl.program_id(0) * BLOCK_E + tl.arange(0, BLOCK_E)
    pos = pid_l * BLOCK_L + tl.arange(0, BLOCK_L)
    e_ok = e < E
    rows = pid_b.to(tl.int64) * stride_b + e.to(tl.int64)[:, None] * stride_e
    bias = tl.zeros((BLOCK_E,), dtype=tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + e, mask=e_ok, other=0.0).to(tl.float32)

    dx = tl.zeros((BLOCK_E, BLOCK_L), dtype=tl.float32)
    for j in tl.static_range(K):  # input p fed output p - shift(j) through tap j
        dpre = _dpre_at(x_ptr, dout_ptr, rows, w_ptr, e, e_ok, bias, pos - _shift(j, K, REVERSE), L, K, REVERSE)
        wj = tl.load(w_ptr + e * K + j, mask=e_ok, other=0.0).to(tl.float32)
        dx += wj[:, None] * dpre
    mask = e_ok[:, None] & (pos < L)[None, :]
    tl.store(dx_ptr + rows + pos[None, :], dx.to(dx_ptr.dtype.element_ty), mask=mask)

    part = pid_b * tl.num_programs(2) + pid_l
    dpre = _dpre_at(x_ptr, dout_ptr, rows, w_ptr, e, e_ok, bias, pos, L, K, REVERSE)
    for k in tl.static_range(K):
        src = pos + _shift(k, K, REVERSE)
        src_mask = e_ok[:, None] & ((src >= 0) & (src < L))[None, :]
        xk = tl.load(x_ptr + rows + src[None, :], mask=src_mask, other=0.0).to(tl.float32)
        tl.store(dw_ptr + (part * E + e) * K + k, tl.sum(dpre * xk, axis=1), mask=e_ok)
    if HAS_BIAS:
        tl.store(dbias_ptr + part * E + e, tl.sum(dpre, axis=1), mask=e_ok)
