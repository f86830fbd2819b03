"""The mixer's in and out projections: values and gradients against plain torch, gradients in the
(E, B L) layout, and autocast's dtype."""

import pytest
import torch

from vjm.ops.channel_major import channel_matrix, channel_view, in_projection, out_projection

BATCH, LENGTH, DIM, INNER = 2, 5, 3, 4


def tokens_and_weights(bias: bool, dtype=torch.float64):
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g, dtype=dtype, requires_grad=True)  # noqa: E731
    return r(BATCH, LENGTH, DIM), r(2 * INNER, DIM), r(2 * INNER) if bias else None


@pytest.mark.parametrize("bias", [False, True])
def test_in_projection_gradients(bias):
    tokens, weight, b = tokens_and_weights(bias)
    torch.autograd.gradcheck(lambda *a: in_projection(*a), (tokens, weight, b))
    x, z = in_projection(tokens, weight, b)
    expected = (tokens @ weight.t() + (0 if b is None else b)).transpose(1, 2)  # (B, 2E, L)
    torch.testing.assert_close(torch.cat([x, z], dim=1), expected)
    assert channel_matrix(x).data_ptr() == x.data_ptr()  # a view of the (E, B L) layout, not a copy


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_out_projection_gradients_come_back_in_the_mixer_layout(bias, scale):
    g = torch.Generator().manual_seed(1)
    y = channel_view(torch.randn(INNER, BATCH * LENGTH, generator=g, dtype=torch.float64), BATCH).requires_grad_()
    weight = torch.randn(DIM, INNER, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(DIM, generator=g, dtype=torch.float64, requires_grad=True) if bias else None
    torch.autograd.gradcheck(lambda *a: out_projection(*a, scale=scale), (y, weight, b))
    out = out_projection(y, weight, b, scale)
    expected = scale * y.transpose(1, 2) @ weight.t() + (0 if b is None else b)
    torch.testing.assert_close(out, expected)
    (dy,) = torch.autograd.grad(out.sum(), y)
    assert dy.stride() == y.stride()  # no copy needed by a scan that reads y's layout


def test_projections_follow_autocast():
    tokens, weight, _ = tokens_and_weights(False, dtype=torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        x, z = in_projection(tokens, weight, None)
        out = out_projection(x + z, weight[:INNER].t(), None, 0.5)
    assert x.dtype == z.dtype == out.dtype == torch.bfloat16
    out.float().sum().backward()
    assert tokens.grad.dtype == weight.grad.dtype == torch.float32
