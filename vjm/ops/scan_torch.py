"""Pure-PyTorch selective scan: the reference that defines the operator (semantics in scan.py),
and the check of its input shapes that every backend shares.

The recurrence h_t = exp(dt_t A) h_{t-1} + dt_t B_t u_t runs step by step on a (batch, E, N)
state, with the output contraction y_t = C_t h_t in the same step. Under autograd a sequence
longer than one chunk is checkpointed chunk by chunk: only the chunk-boundary states are kept,
never a B x E x L x N tensor.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

DEFAULT_CHUNK = 64


def _scan_chunk(h, u, delta, A, B, C):
    """One chunk in the accumulation dtype. h: (b, e, n); u, delta: (b, e, k); A: (e, n); B, C: (b, n, k)."""
    # Time-major views; each step builds its decay and input from (b, e) and (b, n) slices, so the
    # (b, e, n) state stays in cache and no k x b x e x n tensor is written: on a CPU the forward is
    # 2-3x faster than batching the chunk's decays, which streams them through memory
    # (bench/scan_cpu.py, docs/PERFORMANCE.md).
    delta_t = delta.permute(2, 0, 1).unsqueeze(-1)
    scaled_u = (delta * u).permute(2, 0, 1).unsqueeze(-1)
    B_t = B.permute(2, 0, 1).unsqueeze(2)
    C_t = C.permute(2, 0, 1).unsqueeze(2)
    outputs = []
    # unbind, not indexing: the backward of one index per step would zero-fill the whole chunk each time.
    for dt, x, b, c in zip(delta_t.unbind(0), scaled_u.unbind(0), B_t.unbind(0), C_t.unbind(0)):
        h = torch.addcmul(h * torch.exp(dt * A), x, b)  # h_t = exp(dt_t A) h_{t-1} + dt_t u_t B_t
        outputs.append((h * c).sum(-1))                 # y_t = C_t . h_t
    return torch.stack(outputs, dim=-1), h


def selective_scan_torch(
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
    chunk_size: int = DEFAULT_CHUNK,
) -> torch.Tensor:
    out_dtype = u.dtype
    if reverse:
        u, delta, B, C = (t.flip(-1) for t in (u, delta, B, C))
        z = z.flip(-1) if z is not None else None
    # The state is fp32 (fp64 when the inputs are, so the reference can be checked exactly).
    acc = torch.float64 if u.dtype == torch.float64 else torch.float32
    u32, delta32 = u.to(acc), delta.to(acc)
    A32, B32, C32 = A.to(acc), B.to(acc), C.to(acc)
    if delta_bias is not None:
        delta32 = delta32 + delta_bias.to(acc)[:, None]
    if delta_softplus:
        delta32 = F.softplus(delta32)

    batch, dim, length = u.shape
    h = u32.new_zeros(batch, dim, A.shape[1])
    # Checkpointing bounds memory on long sequences; a single chunk gains nothing from it.
    checkpointed = length > chunk_size and torch.is_grad_enabled() and any(
        t.requires_grad for t in (u32, delta32, A32, B32, C32)
    )
    outputs = []
    for start in range(0, length, chunk_size):
        piece = slice(start, start + chunk_size)
        args = (h, u32[..., piece], delta32[..., piece], A32, B32[..., piece], C32[..., piece])
        if checkpointed:
            y, h = checkpoint(_scan_chunk, *args, use_reentrant=False)
        else:
            y, h = _scan_chunk(*args)
        outputs.append(y)
    y = torch.cat(outputs, dim=-1)

    if D is not None:
        y = y + u32 * D.to(acc)[:, None]
    if z is not None:
        y = y * F.silu(z.to(acc))
    if reverse:
        y = y.flip(-1)
    return y.to(out_dtype)


def check_scan_shapes(u, delta, A, B, C, D, z, delta_bias) -> None:
    """A ValueError that names the tensor whose shape or device does not fit u and A."""
    if u.dim() != 3:
        raise ValueError(f"selective_scan: u must be (batch, E, L), got shape {tuple(u.shape)}")
    batch, dim, length = u.shape
    expected = {
        "delta": (delta, (batch, dim, length)),
        "A": (A, (dim, None)),
        "B": (B, (batch, None, length)),
        "C": (C, (batch, None, length)),
        "D": (D, (dim,)),
        "z": (z, (batch, dim, length)),
        "delta_bias": (delta_bias, (dim,)),
    }
    state = A.shape[-1] if A.dim() == 2 else None
    for name, (tensor, shape) in expected.items():
        if tensor is None:
            continue
        shape = tuple(state if s is None else s for s in shape)
        if tuple(tensor.shape) != shape:
            raise ValueError(
                f"selective_scan: {name} must have shape {shape} (from u {tuple(u.shape)} and "
                f"A {tuple(A.shape)}), got {tuple(tensor.shape)}"
            )
        if tensor.device != u.device:
            raise ValueError(f"selective_scan: {name} is on {tensor.device} but u is on {u.device}")

