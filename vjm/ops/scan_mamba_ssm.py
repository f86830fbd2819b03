"""The selective scan of mamba_ssm's CUDA kernels, behind vjm's signature."""

from __future__ import annotations

import torch


def import_error() -> str | None:
    """Why mamba_ssm's kernel cannot be used, or None when it can."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn  # noqa: F401
    except Exception as exc:  # ImportError, or an undefined symbol from a mismatched build
        return f"mamba_ssm does not import ({type(exc).__name__}: {exc})"
    return None


def selective_scan_mamba_ssm(u, delta, A, B, C, D=None, z=None, delta_bias=None,
                             delta_softplus=False, reverse=False):
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn

    if reverse:  # the kernel scans forward only
        u, delta, B, C = (t.flip(-1) for t in (u, delta, B, C))
        z = z.flip(-1) if z is not None else None
    y = selective_scan_fn(
        u.contiguous(), delta.contiguous(), A.float().contiguous(), B.contiguous(), C.contiguous(),
        None if D is None else D.float(),
        None if z is None else z.contiguous(),
        None if delta_bias is None else delta_bias.float(),
        delta_softplus,
    )
    return y.flip(-1) if reverse else y


def usable_for(u: torch.Tensor) -> str | None:
    """Why this backend cannot scan `u`, or None when it can."""
    if not u.is_cuda:
        return "mamba_ssm's kernels run on CUDA tensors only"
    return import_error()
