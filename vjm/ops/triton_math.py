"""Elementwise math for vjm's Triton kernels in the GPU's approximate instructions.

Triton lowers `tl.exp2` to `ex2.approx.f32` wrapped in a range fix-up for results below 2^-126
(a compare and two conditional multiplies), `tl.log` to a ~20-instruction polynomial, and `/` to
an IEEE division. The scan evaluates them once per state entry and step (exp2), or per channel and
step (softplus, sigmoid): that overhead was 14% of the forward's inner loop and 13-29% of the
backward's, counted in their sm_90 code (bench/scan_sass.py, docs/PERFORMANCE.md); the
convolution's SiLU takes the same sigmoid. Here each is one MUFU instruction, `ex2.approx.ftz`,
`lg2.approx.ftz` or `rcp.approx.ftz`, within 2 ulp, with subnormal results flushed to zero (a
state entry decayed below 2^-126 is zero to fp32 accuracy anyway).

Triton's interpreter, which runs the kernels on the CPU for the tests, has no inline assembly:
there the same functions fall back to the tl.* forms, which compute the same values.
"""

import triton
import triton.language as tl

from .backends import interpreting

FAST_MATH = tl.constexpr(not interpreting())
LOG2E = tl.constexpr(1.4426950408889634)
LN2 = tl.constexpr(0.6931471805599453)


@triton.jit
def _one_instruction(x, asm: tl.constexpr):
    return tl.inline_asm_elementwise(asm, "=f,f", [x], dtype=tl.float32, is_pure=True, pack=1)


@triton.jit
def exp2(x):
    if FAST_MATH:
        return _one_instruction(x, "ex2.approx.ftz.f32 $0, $1;")
    return tl.exp2(x)


@triton.jit
def log2(x):
    if FAST_MATH:
        return _one_instruction(x, "lg2.approx.ftz.f32 $0, $1;")
    return tl.log2(x)


@triton.jit
def reciprocal(x):
    if FAST_MATH:
        return _one_instruction(x, "rcp.approx.ftz.f32 $0, $1;")
    return 1.0 / x


@triton.jit
def softplus(x):
    """log(1 + e^x) without overflow; the linear branch above 20 matches torch's threshold."""
    soft = tl.maximum(x, 0.0) + LN2 * log2(1.0 + exp2(-tl.abs(x) * LOG2E))
    return tl.where(x > 20.0, x, soft)


@triton.jit
def sigmoid(x):
    return reciprocal(1.0 + exp2(-x * LOG2E))
