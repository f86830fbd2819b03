"""The scan direction of the mixer: its torch reference against the ops it composes, the
dispatcher's backends, and the fused Triton node (conv, projections, scan in one autograd node,
recomputing in the backward) against the reference, values and every gradient."""

import pytest
import torch

from interpreter import run_under_interpreter
from vjm.ops import DIRECTION_BACKENDS, causal_conv1d_silu, scan_direction, selective_scan, usable_backends
from vjm.ops.backends import interpreting, triton_import_error
from vjm.ops.channel_major import channel_view
from vjm.ops.direction_torch import scan_direction_torch
from vjm.ops.direction_triton import scan_direction_triton

triton_missing = triton_import_error()
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
    return scan_direction_torch(x, z, conv_weight, conv_bias, x_proj_weight, dt_proj_weight, A_log, D, dt_bias,
                                reverse, rank)


def fused(xz, conv_weight, conv_bias, x_proj_weight, dt_proj_weight, A_log, D, dt_bias, reverse, rank, batch):
    x, z = channel_view(xz, batch).chunk(2, dim=1)
    return scan_direction_triton(x, z, conv_weight, conv_bias, x_proj_weight, dt_proj_weight, A_log, D,
                                 dt_bias, reverse, rank)


def composition(xz, conv_weight, conv_bias, x_proj_weight, dt_proj_weight, A_log, D, dt_bias, reverse, rank, batch):
    """The direction as its docstring writes it, with contiguous tensors and the public ops."""
    x, z = xz.unflatten(1, (batch, -1)).permute(1, 0, 2).contiguous().chunk(2, dim=1)  # (B, E, L) each
    u = causal_conv1d_silu(x, conv_weight, conv_bias, reverse, backend="torch")
    x_dbl = torch.einsum("bel,re->brl", u, x_proj_weight)  # (B, dt_rank + 2N, L)
    dt, B, C = x_dbl.split([rank, (x_dbl.shape[1] - rank) // 2, (x_dbl.shape[1] - rank) // 2], dim=1)
    delta = torch.einsum("er,brl->bel", dt_proj_weight, dt)
    return selective_scan(u, delta, -torch.exp(A_log), B, C, D, z, dt_bias, delta_softplus=True, reverse=reverse,
                          backend="torch")


@pytest.mark.parametrize("reverse", [False, True])
def test_reference_is_the_composition_of_the_ops(reverse):
    tensors, meta = random_direction(2, 6, 4, 2, 19, seed=3)
    tensors = {k: v.double() for k, v in tensors.items()}
    kwargs = dict(reverse=reverse, rank=meta["rank"], batch=meta["batch"])
    torch.testing.assert_close(reference(**tensors, **kwargs), composition(**tensors, **kwargs), rtol=1e-12, atol=1e-12)


def test_cpu_tensors_run_the_reference_and_named_backends_never_fall_back():
    tensors, meta = random_direction(2, 6, 4, 2, 19, seed=4)
    x, z = channel_view(tensors.pop("xz"), meta["batch"]).chunk(2, dim=1)
    args = (x, z, *tensors.values(), True, meta["rank"])
    assert usable_backends(DIRECTION_BACKENDS, x, z) == ["torch"]
    expected = scan_direction_torch(*args)
    torch.testing.assert_close(scan_direction(*args), expected, rtol=0, atol=0)
    torch.testing.assert_close(scan_direction(*args, backend="torch"), expected, rtol=0, atol=0)
    with pytest.raises(ValueError, match="scan_direction: unknown backend 'cuda'"):
        scan_direction(*args, backend="cuda")
    with pytest.raises(RuntimeError, match="'mamba_ssm' was asked for but cannot run here"):
        scan_direction(*args, backend="mamba_ssm")
    if not interpreting():
        with pytest.raises(RuntimeError, match="'triton' was asked for but cannot run here"):
            scan_direction(*args, backend="triton")


def errors(shape, reverse, dtype="float32", device="cpu"):
    """Relative errors of the fused node (float32, or bf16 under autocast on CUDA) against the
    float64 reference: output, and the gradients of xz and of every parameter."""
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
def test_fused_direction_matches_the_reference_under_the_interpreter():
    for case, errs in zip(INTERPRETER_CASES, run_under_interpreter(INTERPRETER_SCRIPT)):
        assert set(errs) == {"out", "xz", *PARAMS}
        bad = {k: v for k, v in errs.items() if not v <= 1e-4}
        assert not bad, (case, bad)


@pytest.mark.gpu
@pytest.mark.skipif(triton_missing is not None, reason=f"{triton_missing}")
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("reverse", [False, True])
def test_gpu_fused_direction_matches_the_reference(dtype, reverse):
    errs = errors((4, 384, 16, 12, 1568), reverse, dtype, device="cuda")
    tol = 1e-4 if dtype == "float32" else 3e-2
    bad = {k: v for k, v in errs.items() if not v <= tol}
    assert not bad, bad
