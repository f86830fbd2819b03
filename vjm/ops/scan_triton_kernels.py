"""Triton kernels of the selective scan (see scan_triton.py for the operator they implement).

A program scans one batch element, a block of channels and one segment of time (program axes
0, 1, 2), holding the fp32 state of its channels, (NP, BLOCK_E), in registers. The time axis is
walked sequentially: u, delta, z are read as (T, BLOCK_E) tiles, contiguous in time (any batch
and channel strides, shared by all of them), and the steps of a tile are unrolled so that picking
step j out of a tile is a register move. B and C are read in any layout and dtype: one step's N
values, shared by the whole program, converted to fp32 on load.

The reverse direction never flips anything in memory: logical step s reads position L-1-s, and
a tile that covers positions [p, p+T) is consumed from its last column to its first.

Segments: when batch x channel blocks are too few to fill the GPU, time is cut into segments of
whole chunks. Forward: a LOCAL pass scans each segment from a zero state and keeps its end state
and its sum of dt; the main pass starts segment s from the exact state, combined from those of
the segments before (h <- exp(A sum dt) h + h_end, a handful of steps). Backward: the adjoint
recurrence is linear too, and scan_adjoint_local_kernel does the same from the other end.

Backward proper (scan_bwd_kernel): the forward stores the state at the start of every CHUNK
logical steps. The kernel walks its chunks from the end; for each it recomputes the states
forward from the saved one, keeping one every T steps in a small per-program scratch (pass A),
then for each T-step piece from the end recomputes its states into registers and runs the
adjoint recurrence backwards through them (pass B). Its layout splits both the state and the
channels over lanes (see below), which keeps the per-step sums over channels (dB, dC) and over
the state (du, ddelta) cheap. The channel sums are finished per program and added up by the
caller; nothing of size B x E x L x N is stored.
"""

import triton
import triton.language as tl

from .triton_math import LN2, LOG2E, exp2, sigmoid, softplus


@triton.jit
def _column(tile, idx: tl.constexpr, T: tl.constexpr):
    """Column `idx` of a (T, BLOCK_E) tile whose T axis lies within each thread: a register move."""
    return tl.sum(tl.where(tl.arange(0, T)[:, None] == idx, tile, 0.0), axis=0)


@triton.jit
def _put_column(tile, idx: tl.constexpr, T: tl.constexpr, column):
    return tl.where(tl.arange(0, T)[:, None] == idx, column[None, :], tile)


@triton.jit
def _load_dt(delta_ptrs, mask, bias, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr):
    """dt = softplus(delta + bias) over a tile, exactly 0 outside `mask` (a step that changes nothing)."""
    x = tl.load(delta_ptrs, mask=mask, other=0.0).to(tl.float32)
    if HAS_BIAS:
        x = x + bias
    dt = x
    if SOFTPLUS:
        dt = softplus(x)
    return tl.where(mask, dt, 0.0), x


@triton.jit
def _tile_positions(start, L, T: tl.constexpr, REVERSE: tl.constexpr, VEC: tl.constexpr):
    """Positions (ascending) of the T-step tile that begins at logical step `start`. Starts are
    multiples of T, and VEC divides L, so the tile begins aligned to the smaller of the two (powers
    of two): telling the compiler lets it vectorise the tile's loads whatever L is."""
    if REVERSE:
        first = L - start - T
    else:
        first = start
    first = tl.multiple_of(first, VEC if VEC < T else T)
    return first, first + tl.arange(0, T)


@triton.jit
def _load_a2(A_ptr, offsets, mask, A_LOG: tl.constexpr):
    """A log2(e), the exponent scale of exp2. With A_LOG the pointer holds the mixer's parameter
    A_log and A = -exp(A_log) is taken here, saving the caller two ops forward and two backward."""
    a = tl.load(A_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
    if A_LOG:
        a = -exp2(a * LOG2E)
    return a * LOG2E


@triton.jit
def _load_bc(ptr, pos, L, n, N: tl.constexpr, stride_l, stride_n):
    """B_t or C_t (one step's N values) as fp32, from any layout of (batch, N, L)."""
    mask = (n < N) & (pos >= 0) & (pos < L)
    return tl.load(ptr + pos * stride_l + n * stride_n, mask=mask, other=0.0).to(tl.float32)


@triton.jit(do_not_specialize=["unit"])
def scan_fwd_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, out_ptr, states_ptr,
    hloc_ptr, dtsum_ptr,
    E, L, n_chunks, seg_len, n_segs, unit, stride_b, stride_e,
    stride_bb, stride_bn, stride_bl, stride_cb, stride_cn, stride_cl,
    N: tl.constexpr, NP: tl.constexpr, BLOCK_E: tl.constexpr, T: tl.constexpr, CHUNK: tl.constexpr,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    REVERSE: tl.constexpr, SAVE_STATES: tl.constexpr, LOCAL: tl.constexpr, VEC: tl.constexpr,
    A_LOG: tl.constexpr,
):
    """Scan of one segment of seg_len logical steps (program axis 2).

    LOCAL: from a zero state, keep only the segment's final state and its sum of dt (hloc,
    dtsum: (batch, n_segs, N, E) and (batch, n_segs, E)). Otherwise: start from the true state,
    combined from the LOCAL results of the segments before, and write the output (and, with
    SAVE_STATES, the state at every CHUNK-th step, (batch, n_chunks, E, N))."""
    pid_e = tl.program_id(0)
    pid_b = tl.program_id(1).to(tl.int64)
    pid_s = tl.program_id(2)
    e = pid_e * BLOCK_E + tl.arange(0, BLOCK_E)
    e_ok = e < E
    n = tl.arange(0, NP)
    state_mask = (n[:, None] < N) & e_ok[None, :]
    # (E, N) tensors: `unit` is 1, but unknown to the compiler, which would otherwise lay the
    # state out for a contiguous N (spread over lanes) rather than one whole channel per thread.
    state_offsets = e[None, :] * N + n[:, None] * unit
    hloc_offsets = n[:, None] * E + e[None, :]
    A2 = _load_a2(A_ptr, state_offsets, state_mask, A_LOG)
    bias = tl.zeros((BLOCK_E,), dtype=tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + e, mask=e_ok, other=0.0).to(tl.float32)
    D = tl.zeros((BLOCK_E,), dtype=tl.float32)
    if HAS_D:
        D = tl.load(D_ptr + e, mask=e_ok, other=0.0).to(tl.float32)

    row = tl.multiple_of(pid_b * stride_b, VEC)  # (batch, E, L) tensors, all in one layout with time contiguous
    u_ptr += row
    delta_ptr += row
    out_ptr += row
    if HAS_Z:
        z_ptr += row
    B_ptr += pid_b * stride_bb
    C_ptr += pid_b * stride_cb
    e_off = tl.multiple_of(e.to(tl.int64) * stride_e, VEC)
    states_ptr += pid_b * n_chunks * E * N
    hloc_ptr += pid_b * n_segs * E * N
    dtsum_ptr += pid_b * n_segs * E

    h = tl.zeros((NP, BLOCK_E), dtype=tl.float32)
    if not LOCAL:  # the state entering this segment, from the segments before
        for r in range(0, pid_s):
            dt_sum = tl.load(dtsum_ptr + r * E + e, mask=e_ok, other=0.0)
            h_end = tl.load(hloc_ptr + r * E * N + hloc_offsets, mask=state_mask, other=0.0)
            h = exp2(dt_sum[None, :] * A2) * h + h_end
    dt_sum = tl.zeros((BLOCK_E,), dtype=tl.float32)
    seg_start = pid_s * seg_len
    for start in range(seg_start, tl.minimum(seg_start + seg_len, L), T):
        if SAVE_STATES:
            if start % CHUNK == 0:
                tl.store(states_ptr + (start // CHUNK) * E * N + state_offsets, h, mask=state_mask)
        first, pos = _tile_positions(start, L, T, REVERSE, VEC)
        mask = ((pos >= 0) & (pos < L))[:, None] & e_ok[None, :]
        offsets = e_off[None, :] + pos[:, None]
        u_tile = tl.load(u_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
        dt_tile, _ = _load_dt(delta_ptr + offsets, mask, bias[None, :], HAS_BIAS, SOFTPLUS)
        if LOCAL:
            dt_sum += tl.sum(dt_tile, axis=0)
            for j in tl.static_range(T):
                col = T - 1 - j if REVERSE else j
                dt = _column(dt_tile, col, T)
                u = _column(u_tile, col, T)
                b = _load_bc(B_ptr, first + col, L, n, N, stride_bl, stride_bn)
                h = exp2(dt[None, :] * A2) * h + (dt * u)[None, :] * b[:, None]
        else:
            y_tile = tl.zeros((T, BLOCK_E), dtype=tl.float32)
            for j in tl.static_range(T):
                col = T - 1 - j if REVERSE else j
                dt = _column(dt_tile, col, T)
                u = _column(u_tile, col, T)
                b = _load_bc(B_ptr, first + col, L, n, N, stride_bl, stride_bn)
                c = _load_bc(C_ptr, first + col, L, n, N, stride_cl, stride_cn)
                h = exp2(dt[None, :] * A2) * h + (dt * u)[None, :] * b[:, None]
                y_tile = _put_column(y_tile, col, T, tl.sum(h * c[:, None], axis=0))
            if HAS_D:
                y_tile += u_tile * D[None, :]
            if HAS_Z:
                z = tl.load(z_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
                y_tile *= z * sigmoid(z)
            tl.store(out_ptr + offsets, y_tile.to(out_ptr.dtype.element_ty), mask=mask)
    if LOCAL:
        tl.store(hloc_ptr + pid_s * E * N + hloc_offsets, h, mask=state_mask)
        tl.store(dtsum_ptr + pid_s * E + e, dt_sum, mask=e_ok)


@triton.jit(do_not_specialize=["unit"])
def scan_adjoint_local_kernel(
    delta_ptr, A_ptr, C_ptr, z_ptr, bias_ptr, dout_ptr, gloc_ptr, dtsum_ptr,
    E, L, seg_len, n_segs, unit, stride_b, stride_e, stride_cb, stride_cn, stride_cl,
    N: tl.constexpr, NP: tl.constexpr, BLOCK_E: tl.constexpr, T: tl.constexpr,
    HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, REVERSE: tl.constexpr,
    VEC: tl.constexpr, A_LOG: tl.constexpr,
):
    """The adjoint recurrence g_t = C_t dy_t + a_{t+1} g_{t+1} run backwards through segment
    1 + (program axis 2) from zero: what the segment sends to the steps before it (gloc,
    (batch, n_segs, E, N), already decayed through the segment) and its sum of dt (dtsum)."""
    pid_e = tl.program_id(0)
    pid_b = tl.program_id(1).to(tl.int64)
    seg = tl.program_id(2) + 1
    e = pid_e * BLOCK_E + tl.arange(0, BLOCK_E)
    e_ok = e < E
    n = tl.arange(0, NP)
    state_mask = (n[:, None] < N) & e_ok[None, :]
    state_offsets = e[None, :] * N + n[:, None] * unit  # (E, N); see scan_fwd_kernel for `unit`
    A2 = _load_a2(A_ptr, state_offsets, state_mask, A_LOG)
    bias = tl.zeros((BLOCK_E,), dtype=tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + e, mask=e_ok, other=0.0).to(tl.float32)
    row = tl.multiple_of(pid_b * stride_b, VEC)
    delta_ptr += row
    dout_ptr += row
    if HAS_Z:
        z_ptr += row
    C_ptr += pid_b * stride_cb
    e_off = tl.multiple_of(e.to(tl.int64) * stride_e, VEC)

    g = tl.zeros((NP, BLOCK_E), dtype=tl.float32)
    dt_sum = tl.zeros((BLOCK_E,), dtype=tl.float32)
    seg_start = seg * seg_len
    n_tiles = tl.cdiv(tl.minimum(seg_len, L - seg_start), T)
    for back in range(n_tiles):
        first, pos = _tile_positions(seg_start + (n_tiles - 1 - back) * T, L, T, REVERSE, VEC)
        mask = ((pos >= 0) & (pos < L))[:, None] & e_ok[None, :]
        offsets = e_off[None, :] + pos[:, None]
        dt_tile, _ = _load_dt(delta_ptr + offsets, mask, bias[None, :], HAS_BIAS, SOFTPLUS)
        dy_tile = tl.load(dout_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
        if HAS_Z:
            z = tl.load(z_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
            dy_tile *= z * sigmoid(z)
        dt_sum += tl.sum(dt_tile, axis=0)
        for jj in tl.static_range(T):
            j = T - 1 - jj
            col = T - 1 - j if REVERSE else j
            dt = _column(dt_tile, col, T)
            dy = _column(dy_tile, col, T)
            c = _load_bc(C_ptr, first + col, L, n, N, stride_cl, stride_cn)
            g = (g + c[:, None] * dy[None, :]) * exp2(dt[None, :] * A2)
    gloc_ptr += (pid_b * n_segs + seg) * E * N
    tl.store(gloc_ptr + state_offsets, g, mask=state_mask)
    tl.store(dtsum_ptr + (pid_b * n_segs + seg) * E + e, dt_sum, mask=e_ok)


# --- Backward with a split layout ------------------------------------------------------------
# State-shaped tensors are (NI, K, NL, EL): entry n = nl * NI + ni of channel e = k * EL + el.
# Lanes run over (NL, EL) and registers over (NI, K), so that a thread holds NI states of K
# channels: sums over the state (du, ddelta) are NI-1 adds and log2(NL) shuffles per channel,
# and sums over channels (dB, dC) are K-1 adds and log2(EL) shuffles per state entry, instead
# of log2(32) shuffles for each of the N entries when a thread owns one whole channel.
# Channel vectors are (1, K, NL, EL), repeated over NL; tiles are (T, K, NL, EL). Every load and
# store is contiguous along the first axis, so that all of them agree on one register layout
# (NI or T values in a thread, lanes over NL then EL) and the loop needs no layout conversion.


@triton.jit
def _tile_column(tile, idx: tl.constexpr, T: tl.constexpr):
    """Step `idx` of a (T, K, NL, EL) tile, as a (1, K, NL, EL) channel vector: a register move."""
    sel = tl.arange(0, T)[:, None, None, None] == idx
    return tl.sum(tl.where(sel, tile, 0.0), axis=0, keep_dims=True)


@triton.jit
def _tile_put(tile, idx: tl.constexpr, T: tl.constexpr, column):
    return tl.where(tl.arange(0, T)[:, None, None, None] == idx, column, tile)


@triton.jit
def _sum_state(x):
    """(NI, K, NL, EL) -> (1, K, 1, EL): the sum over the state entries of each channel."""
    return tl.sum(tl.sum(x, axis=0, keep_dims=True), axis=2, keep_dims=True)


@triton.jit
def _sum_channels(x):
    """(NI, K, NL, EL) -> (NI, NL): the sum over the channels of each state entry."""
    return tl.sum(tl.sum(x, axis=1), axis=2)


@triton.jit
def scan_bwd_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, dout_ptr, states_ptr, scratch_ptr,
    gloc_ptr, dtsum_ptr, du_ptr, ddelta_ptr, dz_ptr, dA_ptr, dBCt_ptr, dD_ptr, dbias_ptr,
    E, L, n_chunks, seg_len, n_segs, stride_b, stride_e,
    stride_bb, stride_bn, stride_bl, stride_cb, stride_cn, stride_cl,
    N: tl.constexpr, NI: tl.constexpr, K: tl.constexpr, NL: tl.constexpr, EL: tl.constexpr,
    T: tl.constexpr, CHUNK: tl.constexpr,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    REVERSE: tl.constexpr, VEC: tl.constexpr, A_LOG: tl.constexpr,
):
    """Gradients through segment (program axis 2) of seg_len logical steps, a whole number of
    chunks. Partial sums, which the caller adds up: dA (batch, n_segs, E, N), dD and dbias
    (batch, n_segs, E), dB and dC transposed and side by side, (batch, E-blocks, L, 2N)."""
    BLOCK_E: tl.constexpr = K * EL
    STATE: tl.constexpr = NI * NL * EL * K
    SUBS: tl.constexpr = CHUNK // T
    pid_e = tl.program_id(0)
    pid_b = tl.program_id(1).to(tl.int64)
    pid_s = tl.program_id(2)
    n_eblocks = tl.num_programs(0)
    ni = tl.arange(0, NI)[:, None, None, None]
    k = tl.arange(0, K)[None, :, None, None]
    nl = tl.arange(0, NL)[None, None, :, None]
    el = tl.arange(0, EL)[None, None, None, :]
    n = nl * NI + ni  # (NI, 1, NL, 1)
    n_ok = n < N
    e = pid_e * BLOCK_E + k * EL + el + nl * 0  # (1, K, NL, EL): a channel vector
    e_ok = e < E
    state_mask = n_ok & e_ok
    lead = nl == 0  # of the NL lanes that hold a channel vector, the one that writes it
    n_bc = n + el * 0  # (NI, 1, NL, EL): the shape in which B_t and C_t are read
    A2 = _load_a2(A_ptr, e * N + n, state_mask, A_LOG)
    bias = tl.zeros((1, K, NL, EL), dtype=tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + e, mask=e_ok, other=0.0).to(tl.float32)
    D = tl.zeros((1, K, NL, EL), dtype=tl.float32)
    if HAS_D:
        D = tl.load(D_ptr + e, mask=e_ok, other=0.0).to(tl.float32)

    row = tl.multiple_of(pid_b * stride_b, VEC)  # every (batch, E, L) tensor in one layout, time contiguous
    u_ptr += row
    delta_ptr += row
    dout_ptr += row
    du_ptr += row
    ddelta_ptr += row
    if HAS_Z:
        z_ptr += row
        dz_ptr += row
    B_ptr += pid_b * stride_bb
    C_ptr += pid_b * stride_cb
    e_off = tl.multiple_of(e.to(tl.int64) * stride_e, [VEC, VEC, VEC, VEC])
    dBCt_ptr += (pid_b * n_eblocks + pid_e) * L * 2 * N
    states_ptr += pid_b * n_chunks * E * N  # (batch, n_chunks, E, N)
    scratch_ptr += ((pid_b * n_segs + pid_s) * n_eblocks + pid_e) * SUBS * STATE
    scratch_offsets = ((k * NL + nl) * EL + el) * NI + ni
    steps = tl.arange(0, T)[:, None, None, None]
    n_red = tl.arange(0, NL)[None, :] * NI + tl.arange(0, NI)[:, None]  # n of an (NI, NL) sum
    n_red_ok = n_red < N

    # The adjoint of the state, already decayed by a_{t+1}: what the later segments send back.
    g = tl.zeros((NI, K, NL, EL), dtype=tl.float32)
    gloc_ptr += pid_b * n_segs * E * N
    dtsum_ptr += pid_b * n_segs * E
    for back in range(n_segs - 1 - pid_s):
        seg = n_segs - 1 - back
        dt_sum = tl.load(dtsum_ptr + seg * E + e, mask=e_ok, other=0.0)
        g_seg = tl.load(gloc_ptr + seg * E * N + e * N + n, mask=state_mask, other=0.0)
        g = exp2(dt_sum * A2) * g + g_seg
    dA_acc = tl.zeros((NI, K, NL, EL), dtype=tl.float32)
    dD_acc = tl.zeros((1, K, NL, EL), dtype=tl.float32)
    dbias_acc = tl.zeros((1, K, NL, EL), dtype=tl.float32)
    first_chunk = pid_s * (seg_len // CHUNK)
    seg_chunks = tl.minimum(seg_len // CHUNK, n_chunks - first_chunk)
    for back in range(seg_chunks):
        chunk = first_chunk + seg_chunks - 1 - back
        chunk_start = chunk * CHUNK
        n_subs = tl.cdiv(tl.minimum(CHUNK, L - chunk_start), T)
        # Pass A: from the saved chunk state, keep the state at the start of every T steps.
        h = tl.load(states_ptr + chunk * E * N + e * N + n, mask=state_mask, other=0.0)
        for sub in range(n_subs):
            tl.store(scratch_ptr + sub * STATE + scratch_offsets, h)
            if sub < n_subs - 1:
                first, pos = _tile_positions(chunk_start + sub * T, L, T, REVERSE, VEC)
                pos = pos[:, None, None, None]
                mask = (pos >= 0) & (pos < L) & e_ok
                offsets = e_off + pos
                u_tile = tl.load(u_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
                dt_tile, _ = _load_dt(delta_ptr + offsets, mask, bias, HAS_BIAS, SOFTPLUS)
                for j in tl.static_range(T):
                    col = T - 1 - j if REVERSE else j
                    p = first + col
                    dt = _tile_column(dt_tile, col, T)
                    u = _tile_column(u_tile, col, T)
                    b = _load_bc(B_ptr, p, L, n_bc, N, stride_bl, stride_bn)
                    h = exp2(dt * A2) * h + (dt * u) * b
        # Pass B: each T-step piece from the end: states into registers, then the adjoint.
        for back_sub in range(n_subs):
            sub = n_subs - 1 - back_sub
            first, pos = _tile_positions(chunk_start + sub * T, L, T, REVERSE, VEC)
            pos = pos[:, None, None, None]
            mask = (pos >= 0) & (pos < L) & e_ok
            offsets = e_off + pos
            u_tile = tl.load(u_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
            dt_tile, _ = _load_dt(delta_ptr + offsets, mask, bias, HAS_BIAS, SOFTPLUS)
            dy_tile = tl.load(dout_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
            if HAS_Z:
                z = tl.load(z_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
                dy_tile *= z * sigmoid(z)

            h = tl.load(scratch_ptr + sub * STATE + scratch_offsets)
            before = tl.zeros((T, NI, K, NL, EL), dtype=tl.float32)  # the state before each step
            for j in tl.static_range(T):
                before = tl.where(steps[:, :, :, :, None] == j, h[None], before)
                if j < T - 1:
                    col = T - 1 - j if REVERSE else j
                    p = first + col
                    dt = _tile_column(dt_tile, col, T)
                    u = _tile_column(u_tile, col, T)
                    b = _load_bc(B_ptr, p, L, n_bc, N, stride_bl, stride_bn)
                    h = exp2(dt * A2) * h + (dt * u) * b

            y_tile = tl.zeros((T, K, NL, EL), dtype=tl.float32)
            ddt_tile = tl.zeros((T, K, NL, EL), dtype=tl.float32)
            du_tile = tl.zeros((T, K, NL, EL), dtype=tl.float32)
            for jj in tl.static_range(T):
                j = T - 1 - jj
                col = T - 1 - j if REVERSE else j
                p = first + col
                dt = _tile_column(dt_tile, col, T)
                u = _tile_column(u_tile, col, T)
                dy = _tile_column(dy_tile, col, T)
                b = _load_bc(B_ptr, p, L, n_bc, N, stride_bl, stride_bn)
                c = _load_bc(C_ptr, p, L, n_bc, N, stride_cl, stride_cn)
                h_prev = tl.sum(tl.where(steps[:, :, :, :, None] == j, before, 0.0), axis=0)
                a = exp2(dt * A2)
                dtu = dt * u
                h = a * h_prev + dtu * b
                y_tile = _tile_put(y_tile, col, T, _sum_state(h * c))
                g += c * dy
                red_mask = n_red_ok & (p >= 0) & (p < L)
                tl.store(dBCt_ptr + p * 2 * N + N + n_red, _sum_channels(h * dy), mask=red_mask)
                tl.store(dBCt_ptr + p * 2 * N + n_red, _sum_channels(g * dtu), mask=red_mask)
                g_b = _sum_state(g * b)
                g_a_h = g * a * h_prev  # d loss / d log(a), per state entry
                dA_acc += g_a_h * dt
                ddt_tile = _tile_put(ddt_tile, col, T, _sum_state(g_a_h * A2) * LN2 + u * g_b)
                du_tile = _tile_put(du_tile, col, T, dt * g_b)
                g = g * a

            # Register pressure: what only the tile's end needs is read again (a cache hit).
            if HAS_D:
                du_tile += D * dy_tile
                y_tile += D * u_tile
                dD_acc += tl.sum(dy_tile * u_tile, axis=0, keep_dims=True)
            store_mask = mask & lead
            if HAS_Z:
                dout = tl.load(dout_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
                z = tl.load(z_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
                z_sig = sigmoid(z)
                dz = dout * y_tile * z_sig * (1.0 + z * (1.0 - z_sig))
                tl.store(dz_ptr + offsets, dz.to(dz_ptr.dtype.element_ty), mask=store_mask)
            ddelta = ddt_tile
            if SOFTPLUS:
                _, x_tile = _load_dt(delta_ptr + offsets, mask, bias, HAS_BIAS, False)
                ddelta = ddt_tile * sigmoid(x_tile)
            ddelta = tl.where(mask, ddelta, 0.0)
            dbias_acc += tl.sum(ddelta, axis=0, keep_dims=True)
            tl.store(du_ptr + offsets, du_tile.to(du_ptr.dtype.element_ty), mask=store_mask)
            tl.store(ddelta_ptr + offsets, ddelta.to(ddelta_ptr.dtype.element_ty), mask=store_mask)

    part = pid_b * n_segs + pid_s
    if A_LOG:  # d loss / d A_log = d loss / dA * A
        dA_acc = dA_acc * (A2 * LN2)
    tl.store(dA_ptr + part * E * N + e * N + n, dA_acc, mask=state_mask)
    if HAS_D:
        tl.store(dD_ptr + part * E + e, dD_acc, mask=e_ok & lead)
    if HAS_BIAS:
        tl.store(dbias_ptr + part * E + e, dbias_acc, mask=e_ok & lead)
