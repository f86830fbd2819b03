import pytest
import torch
import torch.nn.functional as F

from vjm.ops import selective_scan
from vjm.ops.scan_torch import selective_scan_torch


def naive_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, reverse=False):
    """The recurrence written out one step at a time, as the definition reads."""
    if delta_bias is not None:
        delta = delta + delta_bias[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    length = u.shape[-1]
    steps = range(length - 1, -1, -1) if reverse else range(length)
    h = u.new_zeros(u.shape[0], u.shape[1], A.shape[1])
    y = torch.zeros_like(u)
    for t in steps:
        h = torch.exp(delta[:, :, t, None] * A) * h + delta[:, :, t, None] * B[:, None, :, t] * u[:, :, t, None]
        y[:, :, t] = (h * C[:, None, :, t]).sum(-1)
    if D is not None:
        y = y + u * D[:, None]
    if z is not None:
        y = y * F.silu(z)
    return y


def random_inputs(batch, dim, state, length, dtype=torch.float64, seed=0, full=True):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=dtype)  # noqa: E731
    inputs = dict(
        u=r(batch, dim, length), delta=r(batch, dim, length) * 0.5,
        A=-torch.rand(dim, state, generator=g, dtype=dtype) * 2 - 0.1,
        B=r(batch, state, length), C=r(batch, state, length),
    )
    if full:
        inputs.update(D=r(dim), z=r(batch, dim, length), delta_bias=r(dim) * 0.1)
    return inputs


@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 3, 4, 7), (2, 5, 16, 130), (1, 4, 3, 64)])
@pytest.mark.parametrize("full", [False, True])
@pytest.mark.parametrize("reverse", [False, True])
def test_reference_matches_naive_recurrence(shape, full, reverse):
    inputs = random_inputs(*shape, full=full, seed=sum(shape))
    expected = naive_scan(**inputs, delta_softplus=True, reverse=reverse)
    got = selective_scan(**inputs, delta_softplus=True, reverse=reverse, backend="torch")
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("chunk", [1, 3, 64])
def test_chunking_does_not_change_the_result(chunk):
    inputs = random_inputs(2, 3, 4, 50, seed=3)
    inputs["delta"] = inputs["delta"].abs()  # no softplus: a raw positive delta
    expected = naive_scan(**inputs)
    got = selective_scan_torch(**inputs, chunk_size=chunk)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


def test_fp32_state_for_low_precision_inputs():
    inputs = random_inputs(2, 4, 8, 200, dtype=torch.float32, seed=1)
    reference = naive_scan(**{k: v.double() for k, v in inputs.items()}, delta_softplus=True)
    low = {k: v.bfloat16() if k in ("u", "delta", "B", "C", "z") else v for k, v in inputs.items()}
    got = selective_scan(**low, delta_softplus=True, backend="torch")
    assert got.dtype == torch.bfloat16
    # The error comes from rounding the inputs and output, not from accumulating in bf16.
    err = (got.double() - reference).norm() / reference.norm()
    assert err < 2e-2


@pytest.mark.parametrize("reverse", [False, True])
def test_gradients_match_finite_differences(reverse):
    inputs = random_inputs(1, 2, 3, 5, seed=7)
    for tensor in inputs.values():
        tensor.requires_grad_(True)
    names = list(inputs)

    def fn(*tensors):
        return selective_scan_torch(**dict(zip(names, tensors)), delta_softplus=True, reverse=reverse, chunk_size=2)

    assert torch.autograd.gradcheck(fn, tuple(inputs.values()), eps=1e-6, atol=1e-6)


def test_backward_through_checkpointed_chunks_matches_naive():
    inputs = random_inputs(2, 3, 4, 40, seed=5)
    grads = {}
    for name, fn in [("naive", naive_scan), ("torch", lambda **k: selective_scan_torch(**k, chunk_size=8))]:
        leaves = {k: v.clone().requires_grad_(True) for k, v in inputs.items()}
        fn(**leaves, delta_softplus=True).square().sum().backward()
        grads[name] = {k: v.grad for k, v in leaves.items()}
    for key in inputs:
        torch.testing.assert_close(grads["torch"][key], grads["naive"][key], rtol=1e-9, atol=1e-9)


def test_shape_errors_name_the_tensor():
    inputs = random_inputs(2, 3, 4, 6)
    inputs["B"] = inputs["B"][:, :, :5]
    with pytest.raises(ValueError, match=r"B must have shape \(2, 4, 6\)"):
        selective_scan(**inputs)
    with pytest.raises(ValueError, match=r"u must be \(batch, E, L\)"):
        selective_scan(**{**random_inputs(2, 3, 4, 6), "u": torch.zeros(3, 6)})


def test_backend_by_name_is_never_a_silent_fallback():
    inputs = random_inputs(1, 2, 2, 3)
    with pytest.raises(ValueError, match="unknown backend 'cuda'"):
        selective_scan(**inputs, backend="cuda")
    with pytest.raises(RuntimeError, match="'mamba_ssm' was asked for but cannot run here"):
        selective_scan(**inputs, backend="mamba_ssm")  # CPU tensors


@pytest.mark.gpu
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-4), (torch.bfloat16, 2e-2)])
@pytest.mark.parametrize("reverse", [False, True])
def test_mamba_ssm_matches_reference(dtype, tol, reverse):
    pytest.importorskip("mamba_ssm")
    inputs = random_inputs(2, 64, 16, 515, dtype=torch.float32, seed=11)
    inputs = {k: v.cuda() for k, v in inputs.items()}
    cast = {k: v.to(dtype) if k in ("u", "delta", "B", "C", "z") else v for k, v in inputs.items()}
    outs, grads = {}, {}
    for backend in ("torch", "mamba_ssm"):
        leaves = {k: v.clone().requires_grad_(True) for k, v in cast.items()}
        out = selective_scan(**leaves, delta_softplus=True, reverse=reverse, backend=backend)
        out.float().square().sum().backward()
        outs[backend], grads[backend] = out.float(), {k: v.grad.float() for k, v in leaves.items()}
    rel = lambda a, b: ((a - b).norm() / b.norm()).item()  # noqa: E731
    assert rel(outs["mamba_ssm"], outs["torch"]) < tol
    for key in cast:
        assert rel(grads["mamba_ssm"][key], grads["torch"][key]) < tol * 5, key


@pytest.mark.gpu
def test_torch_reference_runs_on_cuda():
    inputs = {k: v.float().cuda() for k, v in random_inputs(2, 8, 4, 100, seed=2).items()}
    expected = naive_scan(**{k: v.double().cpu() for k, v in inputs.items()}, delta_softplus=True)
    got = selective_scan(**inputs, delta_softplus=True, backend="torch")
    torch.testing.assert_close(got.double().cpu(), expected, rtol=1e-4, atol=1e-4)
