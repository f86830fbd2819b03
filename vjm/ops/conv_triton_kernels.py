"""Triton kernels of the depthwise causal convolution with SiLU (see conv.py; launched by conv_triton.py).

Tensors are (batch, E, L) with time contiguous and any batch and channel strides; a program
covers one batch element, BLOCK_E channels and BLOCK_L positions. Output position l reads input
positions l + shift(k) for the K taps: shift = k - (K - 1) (causal), or K - 1 - k when REVERSE
(the causal convolution of the time-reversed sequence, with no reversed copy).

The backward recomputes the convolution instead of saving it: the gradient at input position p
gathers dpre(p - shift(j)) over the taps j. dpre is computed once per position into a small
per-program window (the block and its halo) and read back shifted after a barrier: computing it
at each of the K shifts instead took K times the loads and sigmoids (2624 instructions per 16
positions of a thread against 1184, in the sm_90 code for K = 4).
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
    x_ptr, w_ptr, bias_ptr, dout_ptr, dx_ptr, dw_ptr, dbias_ptr, scratch_ptr, E, L, stride_b, stride_e,
    blocks_per_program,
    K: tl.constexpr, KP: tl.constexpr, HALO: tl.constexpr, BLOCK_E: tl.constexpr, BLOCK_L: tl.constexpr,
    HAS_BIAS: tl.constexpr, REVERSE: tl.constexpr,
):
    """dx over `blocks_per_program` position blocks (program axis 2 numbers the runs of blocks),
    and this program's partial sums of dw (part, E, K) and dbias (part, E), where part numbers
    (batch, run of blocks); the caller adds the parts up.

    Per block, d loss / d(pre-activation) is computed once per position, for the block and the
    HALO positions beyond it that its dx reads (after it; before it when REVERSE), and put in this
    program's slot of `scratch`; after a barrier, dx gathers the K shifted windows of it."""
    pid_e = tl.program_id(0)
    pid_b = tl.program_id(1)
    pid_r = tl.program_id(2)
    e = pid_e * BLOCK_E + tl.arange(0, BLOCK_E)
    e_ok = e < E
    rows = pid_b.to(tl.int64) * stride_b + e.to(tl.int64)[:, None] * stride_e
    bias = tl.zeros((BLOCK_E,), dtype=tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + e, mask=e_ok, other=0.0).to(tl.float32)
    width: tl.constexpr = HALO + BLOCK_L + HALO
    slot = ((pid_b * tl.num_programs(0) + pid_e) * tl.num_programs(2) + pid_r).to(tl.int64) * BLOCK_E * width
    scratch = scratch_ptr + slot + tl.arange(0, BLOCK_E)[:, None] * width  # (BLOCK_E, 1) row starts
    cols = tl.arange(0, BLOCK_L)
    taps = tl.arange(0, KP)
    if REVERSE:  # dx at p reads dpre at p - shift(j) = p - (K-1-j): the halo precedes the block
        halo_cols = tl.arange(0, HALO)
    else:
        halo_cols = HALO + BLOCK_L + tl.arange(0, HALO)

    dw = tl.zeros((BLOCK_E, KP), dtype=tl.float32)
    dbias = tl.zeros((BLOCK_E,), dtype=tl.float32)
    first_block = pid_r * blocks_per_program
    for block in range(first_block, tl.minimum(first_block + blocks_per_program, tl.cdiv(L, BLOCK_L))):
        start = block * BLOCK_L
        pos = start + cols
        dpre = _dpre_at(x_ptr, dout_ptr, rows, w_ptr, e, e_ok, bias, pos, L, K, REVERSE)
        halo = _dpre_at(x_ptr, dout_ptr, rows, w_ptr, e, e_ok, bias, start - HALO + halo_cols, L, K, REVERSE)
        tl.debug_barrier()  # every thread is done reading the previous block's window
        tl.store(scratch + HALO + cols[None, :], dpre)
        tl.store(scratch + halo_cols[None, :], halo)
        tl.debug_barrier()  # the window is written: any thread may read any column of it
        dx = tl.zeros((BLOCK_E, BLOCK_L), dtype=tl.float32)
        for j in tl.static_range(K):  # input p fed output p - shift(j) through tap j
            wj = tl.load(w_ptr + e * K + j, mask=e_ok, other=0.0).to(tl.float32)
            dx += wj[:, None] * tl.load(scratch + HALO + cols[None, :] - _shift(j, K, REVERSE))
        mask = e_ok[:, None] & (pos < L)[None, :]
        tl.store(dx_ptr + rows + pos[None, :], dx.to(dx_ptr.dtype.element_ty), mask=mask)
        for k in tl.static_range(K):
            src = pos + _shift(k, K, REVERSE)
            src_mask = e_ok[:, None] & ((src >= 0) & (src < L))[None, :]
            xk = tl.load(x_ptr + rows + src[None, :], mask=src_mask, other=0.0).to(tl.float32)
            dw += tl.where(taps[None, :] == k, tl.sum(dpre * xk, axis=1)[:, None], 0.0)
        dbias += tl.sum(dpre, axis=1)

    part = pid_b * tl.num_programs(2) + pid_r
    tl.store(dw_ptr + (part * E + e[:, None]) * K + taps[None, :], dw, mask=e_ok[:, None] & (taps[None, :] < K))
    if HAS_BIAS:
        tl.store(dbias_ptr + part * E + e, dbias, mask=e_ok)
