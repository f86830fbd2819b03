"""The selective scan as Triton kernels (forward and backward), behind vjm's signature.

Same operator as `selective_scan_torch` (see scan.py): fp32 state whatever the input
dtype, output in u's dtype, `reverse` scans from the end without flipped copies.

Layouts: the kernels read u, delta and z with any batch and channel strides as long as time is
contiguous and all three share them (the mixer's (E, batch x L) layout, straight out of its
matmuls, or plain contiguous); a tensor in another layout is copied into u's first. The output
and the gradients come back in u's layout. B and C, 1/24 of the size at VideoMamba's widths, are
copied to fp32 (batch, L, N) unless they are in it already.

Under autograd the forward keeps only the state at every CHUNK-th step, (batch, L / CHUNK, E, N)
floats, and the backward recomputes the states in between (scan_triton_kernels.py says how).

Parallelism: one program scans one batch element and a block of channels. When that gives too few
programs to fill the GPU (small batch, long sequences), time is cut into segments of whole chunks
scanned side by side: a first pass scans each segment from a zero state (forward) or a zero adjoint
(backward), keeping only its end value and its sum of dt, and the main pass starts each segment
from the combination of those (a short sequential loop over the segments before it).

Runs on CUDA tensors; on CPU tensors only under Triton's interpreter (TRITON_INTERPRET=1), which
is how the CPU tests exercise the kernels.
"""

from __future__ import annotations

import torch

from .backends import interpreting
from .grid import cdiv, next_pow2, segments
from .layout import in_layout_of, time_contiguous
from .scan_torch import check_scan_shapes

FWD_TILE = 16  # steps per register tile in the forward kernel
BWD_TILE = 4  # steps whose states the backward kernel holds in registers at once (128 registers, no spills)
CHUNK = 64  # the forward saves the state every CHUNK steps (a multiple of both tiles)
BLOCK_E = 32  # forward channels per program: one warp, one channel per thread
BWD_STATE_LANES = 4  # backward: lanes that share one channel's state (each holds N / this entries)
BWD_CHANNELS_PER_THREAD = 1  # backward: channels per thread (2 and 4 spill or run slower: docs/PERFORMANCE.md)
TARGET_PROGRAMS = 2048  # forward: cut time into segments until there are about this many programs
# Backward: each segment adds an adjoint pre-pass and a scratch, so time is cut only when batch x
# channel blocks are too few to fill the GPU, and then towards BWD_TARGET_PROGRAMS (H100 timings
# in docs/PERFORMANCE.md: at L 784, batch 64, two segments cost 26%; at L 6272, batch 8, eleven
# segments saved 30% over three).
BWD_ENOUGH_PROGRAMS = 1024
BWD_TARGET_PROGRAMS = 4096


def _check_inputs(tensors: dict[str, torch.Tensor | None]) -> None:
    check_scan_shapes(**tensors)
    u = tensors["u"]
    if u.numel() == 0:
        raise ValueError(f"selective_scan_triton: u is empty (shape {tuple(u.shape)})")
    for name, tensor in tensors.items():
        if tensor is None:
            continue
        if not tensor.is_floating_point() or tensor.dtype == torch.float64:
            raise ValueError(
                f"selective_scan_triton: {name} has dtype {tensor.dtype}; the kernels take "
                "float32, bfloat16 or float16 (use backend='torch' for float64)"
            )
        if not (tensor.is_cuda or interpreting()):
            raise ValueError(
                f"selective_scan_triton: {name} is on {tensor.device}; the kernels need CUDA tensors "
                "(or TRITON_INTERPRET=1, set before triton is imported, to run them on the CPU)"
            )


def split_layout(state: int) -> dict[str, int]:
    """The backward's one warp: NL lanes over the state (NI entries each), EL over channels (K each)."""
    lanes_n = min(BWD_STATE_LANES, next_pow2(state))
    return dict(NI=next_pow2(state) // lanes_n, K=BWD_CHANNELS_PER_THREAD, NL=lanes_n, EL=32 // lanes_n)


def prepare(u, delta, A, B, C, D, z, delta_bias):
    """The inputs in layouts the kernels read (copies only of what is in none of them)."""
    u = time_contiguous(u)
    return (u, in_layout_of(delta, u), A.contiguous(), _steps_fp32(B), _steps_fp32(C),
            _contiguous(D), in_layout_of(z, u), _contiguous(delta_bias))


def scan_forward(u, delta, A, B, C, D, z, delta_bias, delta_softplus, reverse, save_states, a_log=False):
    """(out, states): the scan of prepared inputs, and with save_states the state every CHUNK steps
    that scan_backward needs (None without). With a_log, `A` holds log(-A) (the mixer's A_log)."""
    from .scan_triton_kernels import scan_fwd_kernel  # triton is optional: imported when used

    batch, dim, length = u.shape
    state = A.shape[1]
    n_chunks = cdiv(length, CHUNK)
    n_eblocks = cdiv(dim, BLOCK_E)
    seg_len, n_segs = segments(length, batch * n_eblocks, CHUNK, TARGET_PROGRAMS)
    f32 = dict(device=u.device, dtype=torch.float32)
    out = torch.empty_like(u)
    states = torch.empty(batch, n_chunks, dim, state, **f32) if save_states else None
    hloc = torch.empty(batch, n_segs, dim, state, **f32) if n_segs > 1 else out
    dtsum = torch.empty(batch, n_segs, dim, **f32) if n_segs > 1 else out
    args = (u, delta, A, B, C, _or(D, u), _or(z, u), _or(delta_bias, u), out, _or(states, out), hloc, dtsum,
            dim, length, n_chunks, seg_len, n_segs, 1, u.stride(0), u.stride(1), *B.stride(), *C.stride())
    meta = dict(N=state, NP=next_pow2(state), BLOCK_E=BLOCK_E, T=FWD_TILE, CHUNK=CHUNK,
                HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None,
                SOFTPLUS=bool(delta_softplus), REVERSE=bool(reverse), VEC=_alignment(u), A_LOG=bool(a_log),
                num_warps=max(BLOCK_E // 32, 1))
    if n_segs > 1:  # the last segment's end state is never needed
        scan_fwd_kernel[(n_eblocks, batch, n_segs - 1)](*args, **meta, SAVE_STATES=False, LOCAL=True)
    scan_fwd_kernel[(n_eblocks, batch, n_segs)](*args, **meta, SAVE_STATES=bool(save_states), LOCAL=False)
    return out, states


def scan_backward(u, delta, A, B, C, D, z, delta_bias, states, chunk, dout, delta_softplus, reverse,
                  a_log=False):
    """Gradients (du, ddelta, dA, dB, dC, dD, dz, ddelta_bias) of prepared inputs, given the
    states that scan_forward saved every `chunk` steps (its CHUNK); du, ddelta, dz in u's layout.
    With a_log, `A` holds log(-A) and its gradient is that of log(-A)."""
    from .scan_triton_kernels import scan_adjoint_local_kernel, scan_bwd_kernel

    dout = in_layout_of(dout, u)
    batch, dim, length = u.shape
    state = A.shape[1]
    lanes = split_layout(state)
    block_e = lanes["K"] * lanes["EL"]
    n_eblocks = cdiv(dim, block_e)
    programs = batch * n_eblocks
    target = BWD_TARGET_PROGRAMS if programs < BWD_ENOUGH_PROGRAMS else 1  # 1: one segment
    seg_len, n_segs = segments(length, programs, chunk, target)
    f32 = dict(device=u.device, dtype=torch.float32)
    du, ddelta = torch.empty_like(u), torch.empty_like(u, dtype=delta.dtype)
    dz = torch.empty_like(u, dtype=z.dtype) if z is not None else None  # z may be a strided view
    dA = torch.empty(batch, n_segs, dim, state, **f32)
    # dB and dC side by side per step, (batch, E-blocks, L, 2N): one sum adds up both.
    dBCt = torch.empty(batch, n_eblocks, length, 2 * state, **f32)
    dD = torch.empty(batch, n_segs, dim, **f32) if D is not None else None
    dbias = torch.empty(batch, n_segs, dim, **f32) if delta_bias is not None else None
    # Per program, the states of one chunk every BWD_TILE steps: a cost fixed by the number of
    # programs (about BWD_TARGET_PROGRAMS when time is cut), not by L.
    scratch = torch.empty(batch * n_segs * n_eblocks * (chunk // BWD_TILE) * next_pow2(state) * block_e, **f32)
    gloc = torch.empty(batch, n_segs, dim, state, **f32) if n_segs > 1 else dA
    dtsum = torch.empty(batch, n_segs, dim, **f32) if n_segs > 1 else dA
    flags = dict(HAS_Z=z is not None, HAS_BIAS=delta_bias is not None, SOFTPLUS=bool(delta_softplus),
                 REVERSE=bool(reverse), VEC=_alignment(u), A_LOG=bool(a_log))
    layout = (u.stride(0), u.stride(1))
    if n_segs > 1:  # the first segment sends nothing back
        scan_adjoint_local_kernel[(cdiv(dim, BLOCK_E), batch, n_segs - 1)](
            delta, A, C, _or(z, u), _or(delta_bias, u), dout, gloc, dtsum,
            dim, length, seg_len, n_segs, 1, *layout, *C.stride(),
            N=state, NP=next_pow2(state), BLOCK_E=BLOCK_E, T=FWD_TILE, **flags,
            num_warps=max(BLOCK_E // 32, 1),
        )
    scan_bwd_kernel[(n_eblocks, batch, n_segs)](
        u, delta, A, B, C, _or(D, u), _or(z, u), _or(delta_bias, u), dout, states, scratch,
        gloc, dtsum, du, ddelta, _or(dz, du), dA, dBCt, _or(dD, dA), _or(dbias, dA),
        dim, length, states.shape[1], seg_len, n_segs, *layout, *B.stride(), *C.stride(),
        N=state, **lanes, T=BWD_TILE, CHUNK=chunk, HAS_D=D is not None, **flags, num_warps=1,
    )
    # fp32 sums of the per-program parts; autograd casts each to its input's dtype.
    dB, dC = dBCt.sum(1).transpose(1, 2).chunk(2, dim=1)
    return (
        du, ddelta, dA.sum((0, 1)), dB, dC,
        dD.sum((0, 1)) if D is not None else None,
        dz,
        dbias.sum((0, 1)) if delta_bias is not None else None,
    )


class SelectiveScanTriton(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus, reverse, save_states):
        inputs = prepare(u, delta, A, B, C, D, z, delta_bias)
        out, states = scan_forward(*inputs, delta_softplus, reverse, save_states)
        if save_states:
            ctx.save_for_backward(*inputs, states)
            ctx.chunk, ctx.flags = CHUNK, (bool(delta_softplus), bool(reverse))
        return out

    @staticmethod
    def backward(ctx, dout):
        *inputs, states = ctx.saved_tensors
        return scan_backward(*inputs, states, ctx.chunk, dout, *ctx.flags) + (None, None, None)


def selective_scan_triton(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    reverse: bool = False,
) -> torch.Tensor:
    """Selective scan through the Triton kernels; same signature and result as selective_scan_torch."""
    inputs = dict(u=u, delta=delta, A=A, B=B, C=C, D=D, z=z, delta_bias=delta_bias)
    _check_inputs(inputs)
    if CHUNK % FWD_TILE or CHUNK % BWD_TILE:
        raise ValueError(f"scan_triton: CHUNK ({CHUNK}) must be a multiple of FWD_TILE ({FWD_TILE}) "
                         f"and BWD_TILE ({BWD_TILE})")
    save_states = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in inputs.values()
    )
    return SelectiveScanTriton.apply(u, delta, A, B, C, D, z, delta_bias,
                                     delta_softplus, reverse, save_states)


def _contiguous(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.contiguous()


def _steps_fp32(t: torch.Tensor) -> torch.Tensor:
    """B or C as fp32 with one step's N values adjacent, 16-byte aligned: the kernels read a step's
    N values together, three times over in the backward. (Reading the mixer's bf16 projection in
    place, unaligned, made the backward 1.45x slower: docs/PERFORMANCE.md.)"""
    if t.dtype == torch.float32 and t.stride(1) == 1 and t.stride(2) % 4 == 0 and t.data_ptr() % 16 == 0:
        return t
    return t.transpose(1, 2).float().contiguous().transpose(1, 2)


def _alignment(u: torch.Tensor) -> int:
    """8, 4 or 1: the alignment (in elements) of L and u's batch and channel strides, which the
    kernels are told (tl.multiple_of) so that their tile loads vectorise whatever L is. 8 bf16 or
    4 fp32 elements fill a 16-byte load; fewer values mean fewer variants to compile."""
    numbers = [u.shape[-1]] + [stride for stride, size in zip(u.stride()[:2], u.shape[:2]) if size > 1]
    return next(vec for vec in (8, 4, 1) if all(n % vec == 0 for n in numbers))


def _or(t: torch.Tensor | None, placeholder: torch.Tensor) -> torch.Tensor:
    """A pointer argument for a kernel input that is absent (its flag keeps it unread)."""
    return placeholder if t is None else t
