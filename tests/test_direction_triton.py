"""The fused Triton scan direction (conv, projections, scan in one autograd node, recomputing
in the backward) against the same composition of torch ops, values and every gradient."""

import pytest
import torch

from interpreter import run_under_interpreter
from vjm.ops import scan_triton
from vjm.ops.causal_conv import causal_conv1d_silu_torch
from vjm.ops.channel_major import channel_view
from vjm.ops.direction_triton import project, scan_direction_triton
from vjm.ops.scan_torch import selective_scan_torch

triton_missing = scan_triton.import_error()
PARAMS = ("conv_weight", "conv_bias", "x_proj_weight", "dt_proj_weight", "A_log", "D", "dt_bias")


def random_direction(batch, dim, state, rank, length, seed, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    return dict(
        xz=r(2 * dim, batch * length), conv_weight=r(dim, 4) * 0.5, conv_bias=r(dim) * 0.1,
        x_proj_weight=r(rank + 2 * state, dim) * dim**-0.5, dt_proj_weight=r(dim, rank) * rank**-0.5,
        A_log=torch.log(torch.rand(dim, state, generator=g) * 2 + 0.1), D=r(dim), dt_bias=r(dim) * 0.1 - 2,
    ), dict(batch=batch, length=length, rank=rank, device=device)


def reference(xz, conv_weight, conv_bias, x_proj_weight, dt_proj_weight, A_log, D, dt_bias, reverse, rank, batch):
    x, z = channel_view(xz, batch).chunk(2, dim=1)
    u = causal_conv1d_silu_torch(x, conv_weight, conv_bias, reverse)
    _, delta, B, C = project(u, x_proj_weight, dt_proj_weight, rank)
    return selective_scan_torch(u, delta, -torch.exp(A_log), B, C, D, z, dt_bias, delta_softplus=True,
                                reverse=reverse)


def fused(xz, conv_weight, conv_bias, x_proj_weight, dt_proj_weight, A_log, D, dt_bias, reverse, rank, batch):
    x, z = channel_view(xz, batch).chunk(2, dim=1)
    return scan_direction_triton(x, z, conv_weight, conv_bias, x_proj_weight, dt_proj_weight, A_log, D,
                                 dt_bias, reverse, rank)


def errors(shape, reverse, dtype="float32", device="cpu"):
    """Relative errors of the fused node (float32, or bf16 under autocast on CUDA) against the
    float64 composition: output, and the gradients of xz and of every parameter."""
    tensors, meta = random_direction(*shape, seed=sum(shape))
    cotangent = torch.randn(meta["batch"], shape[1], meta["length"], generator=torch.Generator().manual_seed(7))

    def run(fn, cast, autocast):
        leaves = {k: v.to(device=device, dtype=cast).requires_grad_() for k, v in tensors.items()}
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            out = fn(**leaves, reverse=reverse, rank=meta["rank"], batch=meta["batch"])
        out.backward(cotangent.to(device=device, dtype=out.dtype))
        return {"out": out.detach(), **{k: v.grad for k, v in leaves.items()}}

    exact = run(reference, torch.float64, False)
    got = run(fused, torch.float32, dtype == "bfloat16")
    return {k: ((got[k].double() - exact[k]).norm() / exact[k].norm()).item() for k in exact}


INTERPRETER_CASES = [((2, 6, 4, 2, 19), False), ((3, 5, 3, 2, 17), True)]  # (batch, E, N, dt_rank, L), reverse
INTERPRETER_SCRIPT = """
import json
from vjm.ops import scan_triton
from test_direction_triton import INTERPRETER_CASES, errors
scan_triton.FWD_TILE, scan_triton.BWD_TILE, scan_triton.CHUNK = 4, 2, 8
scan_triton.TARGET_PROGRAMS = scan_triton.BWD_TARGET_PROGRAMS = 10**6
print(json.dumps([errors(*case) for case in INTERPRETER_CASES]))
"""


@pytest.mark.skipif(triton_missing is not None, reason=f"{triton_missing}")
def test_fused_direction_matches_the_composition_under_the_interpreter():
    for case, errs in zip(INTERPRETER_CASES, run_under_interpreter(INTERPRETER_SCRIPT)):
        assert set(errs) == {"out", "xz", *PARAMS}
        bad = {k: v for k, v in errs.items() if not v <= 1e-4}
        assert not bad, (case, bad)


@pytest.mark.gpu
@pytest.mark.skipif(triton_missing is not None, reason=f"{triton_missing}")
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("reverse", [False, True])
def test_gpu_fused_direction_matches_the_composition(dtype, reverse):
    errs = errors((4, 384, 16, 12, 1568), reverse, dtype, device="cuda")
    tol = 1e-4 if dtype == "float32" else 3e-2
    bad = {k: v for k, v in errs.items() if not v <= tol}
    assert not bad, bad
