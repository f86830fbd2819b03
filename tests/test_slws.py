"""SLWS (stochastic layer-wise shuffle): a shuffle per block in training, undone after it, off in evaluation."""

import pytest
import torch
import torch.nn as nn

from vjm.config import config_from_dict
from vjm.models import build
from vjm.models.videomamba import column_order
from vjm.objectives import build_objective
from vjm.regularizers import build_regularizers
from vjm.regularizers.slws import shuffle_blocks, shuffle_probabilities

from test_train import tiny_config

pytestmark = pytest.mark.usefixtures("one_thread")


class PerTokenBlock(nn.Module):
    """The Mamba blocks' (hidden, residual, col_order) protocol with a per-token MLP: equivariant to any
    permutation of the tokens, so a shuffle that is undone exactly changes nothing."""

    def __init__(self, dim: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, hidden, residual, col_order=None):
        residual = hidden if residual is None else residual + hidden
        return self.mlp(residual), residual


class Recorder(nn.Module):
    """Keeps what it was given (hidden and column order) and passes the streams on unchanged."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, hidden, residual, col_order=None):
        self.seen.append((hidden.detach().clone(), col_order))
        return hidden, torch.zeros_like(hidden) if residual is None else residual


def run_stack(blocks: nn.ModuleList, tokens: torch.Tensor, col_order=None) -> torch.Tensor:
    hidden, residual = tokens, None
    for block in blocks:
        hidden, residual = block(hidden, residual, col_order)
    return hidden + residual


def tiny_encoder(**kwargs) -> nn.Module:
    torch.manual_seed(0)
    return build("videomamba_tiny", embed_dim=16, depth=3, **kwargs)


def test_block_l_shuffles_with_probability_rate_times_l_over_depth_minus_one():
    assert shuffle_probabilities(0.6, 4) == pytest.approx([0.0, 0.2, 0.4, 0.6])
    assert shuffle_probabilities(0.5, 1) == [0.0]
    blocks = nn.ModuleList(Recorder() for _ in range(4))
    shuffle_blocks(blocks, 0.6)
    positions = torch.arange(32.0).view(1, 32, 1).expand(2, -1, 3)
    torch.manual_seed(0)
    for _ in range(1000):
        assert torch.equal(run_stack(blocks, positions), positions)  # every shuffle is undone
    for block, probability in zip(blocks, [0.0, 0.2, 0.4, 0.6]):
        shuffled = [not torch.equal(hidden, positions) for hidden, _ in block.seen]
        assert sum(shuffled) / 1000 == pytest.approx(probability, abs=0.05)
        # one permutation for the whole batch
        assert all(torch.equal(hidden[0], hidden[1]) for hidden, _ in block.seen)


def test_the_shuffle_is_undone_exactly_and_gradients_flow_as_without_it():
    torch.manual_seed(0)
    plain = nn.ModuleList(PerTokenBlock(8) for _ in range(4))
    shuffled = nn.ModuleList(PerTokenBlock(8) for _ in range(4))
    shuffled.load_state_dict(plain.state_dict())
    shuffle_blocks(shuffled, 1.0)
    tokens = torch.randn(2, 16, 8)
    expected = run_stack(plain, tokens)
    expected.square().mean().backward()
    for seed in range(3):
        torch.manual_seed(seed)
        shuffled.zero_grad()
        out = run_stack(shuffled, tokens)
        torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-6)
        out.square().mean().backward()
        for a, b in zip(shuffled.parameters(), plain.parameters()):
            assert a.grad.abs().sum() > 0
            torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-6)


def test_rate_zero_is_no_slws_bitwise_and_evaluation_is_never_shuffled():
    clip = torch.randn(2, 3, 4, 32, 32)
    reference = tiny_encoder(drop_path=0.2).train()
    torch.manual_seed(1)
    expected = reference(clip)
    zero = tiny_encoder(drop_path=0.2).train()
    shuffle_blocks(zero.stack.blocks, 0.0)
    torch.manual_seed(1)
    assert torch.equal(zero(clip), expected)  # no draw either: drop path's stream is untouched

    full = tiny_encoder()
    shuffle_blocks(full.stack.blocks, 1.0)
    plain = tiny_encoder()
    assert torch.equal(full.eval()(clip), plain.eval()(clip))
    torch.manual_seed(2)
    trained = full.train()(clip)
    assert not torch.allclose(trained, plain.train()(clip))  # a Mamba block reads order: training differs
    torch.manual_seed(2)
    assert torch.equal(full(clip), trained)  # the same seed, the same shuffles
    trained.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in full.parameters() if p.requires_grad)


def test_the_quad_scans_column_order_follows_the_shuffled_tokens():
    grid = (2, 3, 4)
    col_order = column_order(grid, None, 2, "cpu")
    positions = torch.arange(24.0).view(1, 24, 1).expand(2, -1, 1)
    blocks = nn.ModuleList(Recorder() for _ in range(2))
    shuffle_blocks(blocks, 1.0)  # block 2 always shuffles
    run_stack(blocks, positions, col_order)
    hidden, order = blocks[1].seen[0]
    assert not torch.equal(hidden, positions)
    # Read in its column order, the shuffled sequence gives the tokens in the true column order.
    torch.testing.assert_close(hidden.gather(1, order[..., None]), positions.gather(1, col_order[..., None]))
    quad = tiny_encoder(scan="quad")
    shuffle_blocks(quad.stack.blocks, 1.0)
    assert torch.isfinite(quad.train()(torch.randn(2, 3, 4, 32, 32))).all()


def test_slws_goes_on_the_trained_encoder_only_and_refuses_where_it_cannot_work(tmp_path):
    raw = tiny_config(tmp_path, tmp_path)
    raw["regularizers"] = [{"kind": "slws", "rate": 0.5}]
    vjepa = build_objective(config_from_dict(raw))
    hooked = [len(block._forward_pre_hooks) for block in vjepa.encoder.stack.blocks]
    assert hooked == [0, 1]  # block 0 has probability 0
    assert all(not block._forward_pre_hooks for block in vjepa.target_encoder.stack.blocks)  # the EMA target
    loss, metrics = vjepa({"clip": torch.randn(2, 3, 4, 32, 32),
                           "masks": [(torch.tensor([[0, 1], [0, 2]]), torch.tensor([[2, 3], [1, 3]]))] * 2})
    assert torch.isfinite(loss) and not any(key.startswith("encoder_") for key in metrics)  # no loss term
    supervised = {**raw, "masks": None, "objective": {"name": "supervised", "num_classes": 4, "head": "mean"}}
    objective = build_objective(config_from_dict(supervised))  # exposes 'tokens', not 'context': no loss term asked
    loss, metrics = objective({"clip": torch.randn(2, 3, 4, 32, 32), "label": torch.tensor([0, 3])})
    assert torch.isfinite(loss) and set(metrics) == {"loss", "top1"}
    assert [len(block._forward_pre_hooks) for block in objective.encoder.stack.blocks] == [0, 1]
    with pytest.raises(ValueError, match="applies to 'target_encoder', but VJEPA trains 'encoder'"):
        build_regularizers([{"kind": "slws", "apply_to": "target_encoder"}]).attach(vjepa)
    with pytest.raises(ValueError, match="regularizers\\[0\\]: kind 'slws': rate must be a probability"):
        build_regularizers([{"kind": "slws", "rate": 1.5}])
    raw["model"]["name"] = "vit_tiny"
    raw["model"]["embed_dim"] = 48
    with pytest.raises(ValueError, match="the 'encoder' of VJEPA is a VisionTransformer: attention does not depend"):
        build_objective(config_from_dict(raw))
    raw.update(model={"name": "mambamlp_tiny", "embed_dim": 32, "depth": 2}, masks=None,
               objective={"name": "arm", "cluster_size": 1, "decoder": {"width": 16, "depth": 1, "num_heads": 2}})
    with pytest.raises(ValueError, match="cannot shuffle ARM's encoder: its causal scan order"):
        build_objective(config_from_dict(raw))


def test_activation_checkpointing_replays_the_same_shuffles():
    clip = torch.randn(2, 3, 4, 32, 32)
    grads = []
    for checkpoint_blocks in (0, 3):
        encoder = tiny_encoder(checkpoint_blocks=checkpoint_blocks).train()
        shuffle_blocks(encoder.stack.blocks, 1.0)
        torch.manual_seed(5)
        encoder(clip).square().mean().backward()  # the recomputation draws again: it must draw the same
        grads.append([p.grad for p in encoder.parameters()])
    for kept, recomputed in zip(*grads):
        torch.testing.assert_close(recomputed, kept)


@pytest.mark.gpu
def test_on_the_gpu_shuffles_are_seeded_undone_and_replayed():
    clip = torch.randn(2, 3, 4, 32, 32, device="cuda")
    outputs = []
    for checkpoint_blocks in (0, 3, 3):
        encoder = tiny_encoder(checkpoint_blocks=checkpoint_blocks).cuda().train()
        shuffle_blocks(encoder.stack.blocks, 1.0)
        torch.manual_seed(5)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = encoder(clip)
        out.float().square().mean().backward()
        outputs.append((out, encoder.patch_embed.proj.weight.grad))
    for out, grad in outputs[1:]:
        torch.testing.assert_close(out, outputs[0][0])
        torch.testing.assert_close(grad, outputs[0][1])
    blocks = nn.ModuleList(PerTokenBlock(8) for _ in range(4)).cuda()
    tokens = torch.randn(2, 64, 8, device="cuda")
    expected = run_stack(blocks, tokens)
    shuffle_blocks(blocks, 1.0)
    torch.testing.assert_close(run_stack(blocks, tokens), expected)
