"""The Triton selective scan against the torch reference.

On the CPU the kernels run under Triton's interpreter (in a subprocess, since TRITON_INTERPRET
must be set before triton is imported), with small tiles so that short sequences still cross
tile and chunk boundaries. On CUDA they run compiled, at the sizes the models use.
"""

import pytest
import torch

from interpreter import run_under_interpreter
from test_scan import random_inputs
from vjm.ops import SCAN_BACKENDS, scan_triton, selective_scan, usable_backends
from vjm.ops.backends import interpreting, triton_import_error, triton_unusable_for
from vjm.ops.scan_torch import selective_scan_torch

LOW_PRECISION = ("u", "delta", "B", "C", "z")  # the activations; A, D, delta_bias stay fp32

triton_missing = triton_import_error()


def rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30)).item()


def channel_major(t):
    """(batch, E, L) laid out as (E, batch, L): the mixer's layout."""
    return t.transpose(0, 1).contiguous().transpose(0, 1)


def mixer_layout(inputs):
    """The inputs as MambaMixer makes them, through differentiable views: u, delta and z in its
    (E, batch x L) layout, z the second half of a (2E, batch x L) tensor, B and C column slices of
    one (batch x L, 3 + 2N) matrix."""
    laid = dict(inputs, u=channel_major(inputs["u"]), delta=channel_major(inputs["delta"]))
    if inputs.get("z") is not None:
        dim = inputs["z"].shape[1]
        laid["z"] = channel_major(torch.cat([torch.zeros_like(inputs["z"]), inputs["z"]], 1))[:, dim:]
    B, C = inputs["B"], inputs["C"]
    state = B.shape[1]
    x_dbl = torch.cat([torch.zeros_like(B[:, :3]), B, C], 1).transpose(1, 2).contiguous()
    laid["B"], laid["C"] = (x_dbl[..., 3 + i * state : 3 + (i + 1) * state].transpose(1, 2) for i in (0, 1))
    return laid


def scan_and_grads(fn, inputs, cotangent, layout=None, **kwargs):
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in inputs.items()}
    out = fn(**(layout(leaves) if layout else leaves), **kwargs)
    out.backward(cotangent.to(out.dtype))
    return out.detach(), {k: v.grad for k, v in leaves.items()}


def compare(inputs, dtype, reverse, softplus=True, layout="contiguous"):
    """Errors of the Triton scan (inputs cast to `dtype`) against the float64 reference.
    layout "mixer": the Triton scan reads its inputs in the mixer's strided layout, and the
    gradient it receives is channels-last (as out_proj's backward gives it)."""
    cast = {k: v.to(dtype) if k in LOW_PRECISION else v.float() for k, v in inputs.items()}
    exact = {k: v.double() for k, v in cast.items()}  # the same rounded values, in float64
    cotangent = torch.randn(inputs["u"].shape, generator=torch.Generator().manual_seed(1)).to(inputs["u"].device)
    kwargs = dict(delta_softplus=softplus, reverse=reverse)
    mixer = layout == "mixer"
    triton_cotangent = cotangent.transpose(1, 2).contiguous().transpose(1, 2) if mixer else cotangent
    out, grads = scan_and_grads(scan_triton.selective_scan_triton, cast, triton_cotangent,
                                layout=mixer_layout if mixer else None, **kwargs)
    ref_out, ref_grads = scan_and_grads(selective_scan_torch, exact, cotangent.double(), **kwargs)
    assert out.dtype == dtype
    if mixer:  # the output comes back in u's layout, not as a copy
        assert out.stride() == channel_major(cast["u"]).stride()
    errors = {"out": rel(out, ref_out)}
    for key in inputs:
        assert grads[key].dtype == cast[key].dtype and grads[key].shape == cast[key].shape, key
        errors[key] = rel(grads[key], ref_grads[key])
    return errors


# --- CPU: the kernels under Triton's interpreter ----------------------------------------------

INTERPRETER_CASES = [
    # (batch, E, N, L), full (D, z, delta_bias), reverse, dtype, time cut into segments, layout
    ((1, 3, 3, 9), True, False, "float32", False, "contiguous"),
    ((2, 5, 16, 1), True, True, "float32", True, "contiguous"),
    ((2, 37, 16, 21), True, False, "float32", True, "contiguous"),  # two channel blocks, the second partial
    ((2, 37, 16, 21), False, True, "float32", False, "contiguous"),
    ((1, 4, 5, 19), True, True, "bfloat16", True, "contiguous"),
    ((1, 4, 4, 45), True, True, "float32", True, "contiguous"),  # six chunks of 8 steps, one a segment
    ((3, 6, 4, 21), True, True, "float32", True, "mixer"),
    ((2, 5, 3, 17), True, False, "bfloat16", False, "mixer"),
    ((2, 8, 4, 24), True, True, "float32", True, "mixer"),  # L and strides multiples of 8: aligned tiles
]

INTERPRETER_SCRIPT = """
import json
import torch
from vjm.ops import scan_triton
from test_scan_triton import INTERPRETER_CASES, compare
from test_scan import random_inputs
# Small tiles and chunks: short sequences cross tile and chunk boundaries, and it stays quick.
scan_triton.FWD_TILE, scan_triton.BWD_TILE, scan_triton.CHUNK = 4, 2, 8
results = []
for shape, full, reverse, dtype, segments, layout in INTERPRETER_CASES:
    # One segment per sequence, or as many segments (of one chunk) as the sequence has chunks.
    scan_triton.TARGET_PROGRAMS = scan_triton.BWD_TARGET_PROGRAMS = 10**6 if segments else 1
    inputs = random_inputs(*shape, dtype=torch.float32, seed=sum(shape), full=full)
    results.append(compare(inputs, getattr(torch, dtype), reverse, layout=layout))
print(json.dumps(results))
"""


@pytest.mark.skipif(triton_missing is not None, reason=f"{triton_missing}")
def test_kernels_match_reference_under_the_interpreter():
    results = run_under_interpreter(INTERPRETER_SCRIPT)
    for (shape, full, reverse, dtype, segments, layout), errors in zip(INTERPRETER_CASES, results):
        tol = 1e-4 if dtype == "float32" else 2e-2
        bad = {k: v for k, v in errors.items() if not v <= tol}  # `not <=` also catches NaN
        assert not bad, f"shape {shape}, full={full}, reverse={reverse}, {dtype}, segments={segments}, {layout}: {bad}"


def test_cpu_tensors_are_refused_without_the_interpreter():
    inputs = random_inputs(1, 2, 2, 3, dtype=torch.float32)
    if interpreting():
        pytest.skip("TRITON_INTERPRET is set in this process")
    with pytest.raises(ValueError, match="u is on cpu; the kernels need CUDA tensors"):
        scan_triton.selective_scan_triton(**inputs)
    assert "CUDA tensors only" in triton_unusable_for(inputs["u"])


def test_float64_is_refused_with_a_pointer_to_the_reference():
    inputs = random_inputs(1, 2, 2, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="u has dtype torch.float64.*backend='torch'"):
        scan_triton.selective_scan_triton(**inputs)


def test_auto_never_picks_triton_for_cpu_tensors():
    inputs = random_inputs(1, 2, 2, 3, dtype=torch.float32)
    assert "triton" not in usable_backends(SCAN_BACKENDS, inputs["u"])
    with pytest.raises(RuntimeError, match="'triton' was asked for but cannot run here"):
        selective_scan(**inputs, backend="triton")


# --- CUDA: the compiled kernels ---------------------------------------------------------------

GPU_CASES = [
    # (batch, E, N, L), dtype, reverse
    *[(shape, dtype, reverse)
      for shape in [(2, 64, 16, 515), (1, 37, 16, 1), (3, 100, 16, 1000), (1, 40, 16, 8192)]
      for dtype in ("float32", "bfloat16") for reverse in (False, True)],
    ((1, 48, 7, 300), "float32", False),  # odd state size
    ((1, 48, 7, 300), "bfloat16", True),
    ((2, 64, 16, 515), "float16", True),
]
TOLERANCE = {"float32": 1e-4, "bfloat16": 2e-2, "float16": 2e-2}


@pytest.mark.gpu
@pytest.mark.skipif(triton_missing is not None, reason=f"{triton_missing}")
@pytest.mark.parametrize("shape,dtype,reverse", GPU_CASES, ids=lambda v: "x".join(map(str, v)) if isinstance(v, tuple) else str(v))
def test_gpu_matches_reference(shape, dtype, reverse):
    full = shape[-1] != 8192 or not reverse  # the 8192 case also runs without D, z, bias once
    inputs = {k: v.cuda() for k, v in random_inputs(*shape, dtype=torch.float32, seed=sum(shape), full=full).items()}
    errors = compare(inputs, getattr(torch, dtype), reverse)
    bad = {k: v for k, v in errors.items() if not v <= TOLERANCE[dtype]}
    assert not bad, bad


@pytest.mark.gpu
@pytest.mark.skipif(triton_missing is not None, reason=f"{triton_missing}")
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_gpu_reads_the_mixer_layout_in_place(dtype):
    inputs = {k: v.cuda() for k, v in random_inputs(3, 96, 16, 777, dtype=torch.float32, seed=11).items()}
    errors = compare(inputs, getattr(torch, dtype), reverse=True, layout="mixer")
    bad = {k: v for k, v in errors.items() if not v <= TOLERANCE[dtype]}
    assert not bad, bad


@pytest.mark.gpu
@pytest.mark.skipif(triton_missing is not None, reason=f"{triton_missing}")
def test_gpu_one_segment_per_sequence(monkeypatch):
    """Enough programs without cutting time: the path large batches take."""
    monkeypatch.setattr(scan_triton, "TARGET_PROGRAMS", 1)
    monkeypatch.setattr(scan_triton, "BWD_TARGET_PROGRAMS", 1)
    inputs = {k: v.cuda() for k, v in random_inputs(3, 70, 16, 700, dtype=torch.float32, seed=3).items()}
    errors = compare(inputs, torch.bfloat16, reverse=True)
    assert all(v <= 2e-2 for v in errors.values()), errors


@pytest.mark.gpu
@pytest.mark.skipif(triton_missing is not None, reason=f"{triton_missing}")
def test_gpu_without_softplus_and_with_fp32_B_C_next_to_bf16_activations():
    inputs = {k: v.cuda() for k, v in random_inputs(2, 64, 16, 300, dtype=torch.float32, seed=5).items()}
    inputs["delta"] = inputs["delta"].abs()
    cast = {k: v.bfloat16() if k in ("u", "delta", "z") else v for k, v in inputs.items()}
    out = scan_triton.selective_scan_triton(**cast)
    ref = selective_scan_torch(**{k: v.double() for k, v in cast.items()})
    assert out.dtype == torch.bfloat16 and rel(out, ref) < 2e-2


def peak_training_memory(batch, dim, state, length):
    inputs = random_inputs(batch, dim, state, length, dtype=torch.float32)
    leaves = {k: (v.bfloat16() if k in LOW_PRECISION else v).cuda().requires_grad_(True) for k, v in inputs.items()}
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    out = scan_triton.selective_scan_triton(**leaves, delta_softplus=True)
    out.backward(torch.ones_like(out))
    return torch.cuda.max_memory_allocated() - base


@pytest.mark.gpu
@pytest.mark.skipif(triton_missing is not None, reason=f"{triton_missing}")
def test_gpu_memory_holds_no_state_per_step():
    """Forward + backward never hold a batch x E x L x N tensor (the chunked recomputation):
    doubling L adds the activations and gradients of the new steps, far less than their states.
    (The backward's scratch is a fixed cost: BWD_TARGET_PROGRAMS programs x CHUNK / BWD_TILE states.)"""
    batch, dim, state, length = 4, 256, 16, 4096
    growth = peak_training_memory(batch, dim, state, 2 * length) - peak_training_memory(batch, dim, state, length)
    states_of_new_steps = batch * dim * state * length * 4
    assert growth < states_of_new_steps / 2, f"grew by {growth / 2**20:.0f} MiB"


@pytest.mark.gpu
@pytest.mark.skipif(triton_missing is not None, reason=f"{triton_missing}")
def test_gpu_auto_uses_a_fast_backend_and_no_grad_saves_nothing():
    inputs = {k: v.cuda() for k, v in random_inputs(2, 64, 16, 100, dtype=torch.float32).items()}
    assert "triton" in usable_backends(SCAN_BACKENDS, inputs["u"])
    with torch.no_grad():
        out = selective_scan(**inputs, delta_softplus=True, backend="triton")
    assert out.grad_fn is None
    ref = selective_scan_torch(**{k: v.double() for k, v in inputs.items()}, delta_softplus=True)
    assert rel(out, ref) < 1e-4
