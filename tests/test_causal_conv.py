"""The depthwise causal convolution + SiLU: the torch path against its definition, the Triton
kernels against the torch path (under Triton's interpreter on the CPU, compiled on CUDA)."""

import pytest
import torch
import torch.nn.functional as F

from interpreter import run_under_interpreter
from vjm.ops import CONV_BACKENDS, causal_conv1d_silu, usable_backends
from vjm.ops.backends import interpreting, triton_import_error
from vjm.ops.conv_torch import causal_conv1d_silu_torch
from vjm.ops.conv_triton import causal_conv1d_silu_triton

triton_missing = triton_import_error()


def naive(x, weight, bias, reverse):
    """out[l] = silu(bias + sum_k w[k] x[l + shift(k)]), written out position by position."""
    taps, length = weight.shape[1], x.shape[-1]
    out = torch.zeros_like(x) + (0 if bias is None else bias[:, None])
    for k in range(taps):
        shift = taps - 1 - k if reverse else k - (taps - 1)
        for pos in range(length):
            if 0 <= pos + shift < length:
                out[..., pos] += weight[:, k] * x[..., pos + shift]
    return F.silu(out)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("with_bias", [False, True])
def test_torch_path_matches_the_definition(reverse, with_bias):
    g = torch.Generator().manual_seed(0)
    x, weight = torch.randn(2, 3, 9, generator=g, dtype=torch.float64), torch.randn(3, 4, generator=g, dtype=torch.float64)
    bias = torch.randn(3, generator=g, dtype=torch.float64) if with_bias else None
    torch.testing.assert_close(causal_conv1d_silu_torch(x, weight, bias, reverse), naive(x, weight, bias, reverse))


def test_reverse_is_the_causal_conv_of_the_reversed_sequence():
    x, weight, bias = torch.randn(2, 5, 11, dtype=torch.float64), torch.randn(5, 4, dtype=torch.float64), torch.randn(5, dtype=torch.float64)
    flipped = causal_conv1d_silu_torch(x.flip(-1), weight, bias).flip(-1)
    torch.testing.assert_close(causal_conv1d_silu_torch(x, weight, bias, reverse=True), flipped)


def test_bad_shapes_and_backends_are_named():
    x = torch.randn(2, 5, 11)
    with pytest.raises(ValueError, match=r"weight must be \(E, K\) = \(5, K\)"):
        causal_conv1d_silu(x, torch.randn(4, 4))
    with pytest.raises(ValueError, match=r"bias must have shape \(5,\)"):
        causal_conv1d_silu(x, torch.randn(5, 4), torch.randn(4))
    with pytest.raises(ValueError, match="unknown backend 'cuda'"):
        causal_conv1d_silu(x, torch.randn(5, 4), backend="cuda")
    if not interpreting():
        with pytest.raises(RuntimeError, match="'triton' was asked for but cannot run here"):
            causal_conv1d_silu(x, torch.randn(5, 4), backend="triton")


def test_auto_runs_the_torch_path_on_cpu_tensors():
    g = torch.Generator().manual_seed(1)
    x, weight, bias = torch.randn(2, 5, 11, generator=g), torch.randn(5, 4, generator=g), torch.randn(5, generator=g)
    assert usable_backends(CONV_BACKENDS, x) == ["torch"]
    torch.testing.assert_close(causal_conv1d_silu(x, weight, bias, reverse=True),
                               causal_conv1d_silu_torch(x, weight, bias, reverse=True), rtol=0, atol=0)


def triton_errors(shape, taps, reverse, with_bias, layout, dtype, device="cpu"):
    """Relative errors of the Triton output and gradients against the float64 torch path."""
    g = torch.Generator().manual_seed(sum(shape) + taps)
    x = torch.randn(*shape, generator=g, dtype=torch.float64)
    weight = torch.randn(shape[1], taps, generator=g, dtype=torch.float64) * 0.5
    bias = torch.randn(shape[1], generator=g, dtype=torch.float64) if with_bias else None
    cotangent = torch.randn(*shape, generator=g, dtype=torch.float64)

    def run(fn, cast, mixer):
        leaves = [t.to(device=device, dtype=cast).detach().requires_grad_() for t in (x, weight) + ((bias,) if with_bias else ())]
        xin = leaves[0].transpose(0, 1).contiguous().transpose(0, 1) if mixer else leaves[0]
        out = fn(xin, leaves[1], leaves[2] if with_bias else None, reverse)
        if mixer:
            assert out.stride() == xin.stride()
        out.backward(cotangent.to(device=device, dtype=cast))
        return [out.detach()] + [t.grad for t in leaves]

    exact = run(causal_conv1d_silu_torch, torch.float64, False)
    got = run(causal_conv1d_silu_triton, getattr(torch, dtype), layout == "mixer")
    return [((a.double() - r).norm() / r.norm()).item() for a, r in zip(got, exact)]


INTERPRETER_CASES = [  # (batch, E, L), taps, reverse, bias, layout, dtype
    ((2, 5, 7), 4, False, True, "contiguous", "float32"),
    ((2, 5, 7), 4, True, False, "mixer", "float32"),
    ((1, 20, 300), 4, True, True, "mixer", "float32"),  # several position blocks, a partial channel block
    ((3, 3, 2), 2, False, True, "mixer", "float32"),   # shorter than the kernel
    ((2, 6, 33), 4, False, True, "contiguous", "bfloat16"),
]
INTERPRETER_SCRIPT = """
import json
from vjm.ops import conv_triton
from test_causal_conv import INTERPRETER_CASES, triton_errors
errors = [triton_errors(*case) for case in INTERPRETER_CASES]
conv_triton.BWD_TARGET_PROGRAMS = 1  # one run of blocks per program: the backward reuses its window
print(json.dumps(errors + [triton_errors(*case) for case in INTERPRETER_CASES]))
"""


@pytest.mark.skipif(triton_missing is not None, reason=f"{triton_missing}")
def test_triton_kernels_match_under_the_interpreter():
    for case, errors in zip(INTERPRETER_CASES * 2, run_under_interpreter(INTERPRETER_SCRIPT)):
        tol = 1e-5 if case[-1] == "float32" else 2e-2
        assert all(e <= tol for e in errors), (case, errors)


@pytest.mark.gpu
@pytest.mark.skipif(triton_missing is not None, reason=f"{triton_missing}")
@pytest.mark.parametrize("case", [
    ((4, 384, 1568), 4, False, True, "mixer", "bfloat16"),
    ((4, 384, 1568), 4, True, True, "mixer", "float32"),
    ((3, 37, 129), 4, True, False, "contiguous", "float32"),
    ((2, 64, 3), 4, False, True, "contiguous", "float16"),
])
def test_gpu_triton_matches_torch(case):
    errors = triton_errors(*case, device="cuda")
    tol = 1e-5 if case[-1] == "float32" else 2e-2
    assert all(e <= tol for e in errors), (case, errors)
