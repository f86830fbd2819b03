"""Regularisers are written once and applied to whatever tensors an objective exposes."""

import pytest
import torch

from vjm.models import Predictor, build
from vjm.objectives.vjepa import VJEPA
from vjm.regularizers import build_regularizers
from vjm.regularizers.vicreg import variance_covariance


def test_vicreg_penalises_collapsed_and_correlated_tokens():
    torch.manual_seed(0)
    collapsed = torch.ones(4, 16, 8)  # every token the same: no variance, no covariance
    variance, covariance = variance_covariance(collapsed)
    assert variance.item() == pytest.approx(1.0 - 1e-2, abs=1e-6) and covariance.item() == 0.0
    spread = 3.0 * torch.randn(4, 512, 8)  # std 3 > 1, independent features
    variance, covariance = variance_covariance(spread)
    assert variance.item() == 0.0 and covariance.item() < 0.5
    shared = torch.randn(4, 512, 1)
    correlated = 3.0 * shared.expand(-1, -1, 8) + 0.1 * torch.randn(4, 512, 8)  # one direction, 8 copies
    _, correlated_cov = variance_covariance(correlated)
    assert correlated_cov.item() > 50 * covariance.item()


def test_vicreg_enters_the_vjepa_loss_with_its_weights_and_trains_only_the_encoder():
    torch.manual_seed(0)
    encoder = build("vit_tiny", embed_dim=8, depth=1, num_heads=2)
    predictor = Predictor(8, width=8, depth=1, kind="attention", num_heads=2, num_mask_tokens=1)
    batch = {"clip": torch.randn(2, 3, 2, 32, 32), "masks": [(torch.tensor([[0, 1], [0, 2]]),
                                                               torch.tensor([[2, 3], [1, 3]]))]}
    plain = VJEPA(encoder, predictor)
    loss, _ = plain(batch)
    regularised = VJEPA(encoder, predictor)
    regularised.target_encoder.load_state_dict(plain.target_encoder.state_dict())
    regularised.regularizers = build_regularizers([{"kind": "vicreg", "var_weight": 2.0, "cov_weight": 0.5}])
    reg_loss, metrics = regularised(batch)
    with torch.no_grad():
        variance, covariance = variance_covariance(encoder(batch["clip"], keep=batch["masks"][0][0]))
    torch.testing.assert_close(metrics["context_var"], variance)
    torch.testing.assert_close(metrics["context_cov"], covariance)
    torch.testing.assert_close(reg_loss, loss + 2.0 * variance + 0.5 * covariance)
    assert variance > 0
    # The terms alone reach the encoder, not the predictor.
    encoder.zero_grad(), predictor.zero_grad()
    (regularised(batch)[0] - plain(batch)[0]).backward()
    assert encoder.patch_embed.proj.weight.grad.abs().sum() > 0
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in predictor.parameters())


@pytest.mark.parametrize("spec, message", [
    ({"kind": "vicerg"}, r"regularizers\[0\]: unknown regulariser kind 'vicerg'; did you mean 'vicreg'\?"),
    ({"kind": "vicreg", "var_wieght": 1.0}, r"unknown parameter 'var_wieght' for kind 'vicreg'; did you mean"),
    ({"kind": "vicreg", "cov_weight": -1.0}, r"regularizers\[0\]: kind 'vicreg': cov_weight must be a number >= 0"),
])
def test_bad_regularizer_specs_name_the_culprit(spec, message):
    with pytest.raises(ValueError, match=message):
        build_regularizers([spec])


def test_a_regularizer_on_a_tensor_the_objective_does_not_expose_is_an_error():
    regularizers = build_regularizers([{"kind": "vicreg", "apply_to": "targets"}])
    with pytest.raises(ValueError, match="applies to 'targets', but the objective exposes only \\['context'\\]"):
        regularizers(context=torch.randn(2, 4, 8))


def test_effective_rank_reads_collapse():
    from vjm.objectives.monitors import effective_rank

    torch.manual_seed(0)
    isotropic = torch.randn(2, 2048, 16)
    assert 14.0 < effective_rank(isotropic).item() <= 16.0
    one_direction = torch.randn(2, 2048, 1) * torch.randn(16)
    assert effective_rank(one_direction).item() < 1.1
