"""The selective scan of mamba_ssm's CUDA kernels, behind vjm's signature (when it can run:
backends.mamba_ssm_unusable_for)."""

from __future__ import annotations


def selective_scan_mamba_ssm(u, delta, A, B, C, D=None, z=None, delta_bias=None,
                             delta_softplus=False, reverse=False):
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn  # optional: imported when used

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
