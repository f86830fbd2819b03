"""Launch geometry shared by the Triton launchers (scan_triton.py, conv_triton.py).

A leaf: it imports no other module of vjm.ops.
"""

from __future__ import annotations


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def next_pow2(n: int) -> int:
    """The smallest power of two >= n (1 for n <= 1): Triton's block shapes are powers of two."""
    return 1 << max(n - 1, 0).bit_length()


def segments(length: int, programs: int, chunk: int, target: int) -> tuple[int, int]:
    """(segment length, number of segments): time cut into whole chunks, so that `programs`
    programs per segment make about `target` programs in all."""
    wanted = max(1, min(cdiv(target, programs), cdiv(length, chunk)))
    seg_len = cdiv(cdiv(length, wanted), chunk) * chunk
    return seg_len, cdiv(length, seg_len)
