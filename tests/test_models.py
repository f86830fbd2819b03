import math

import pytest
import torch

from vjm.models import MambaMixer, PatchEmbed3D, build, expand_uni_state_dict, list_models, sincos_3d
from vjm.models.videomamba import column_order

# Small width/depth for speed; the architecture is the registered one otherwise.
SMALL = dict(embed_dim=32, depth=2)


def count(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name,paper_millions", [
    ("videomamba_tiny", 7), ("videomamba_small", 26), ("videomamba_middle", 74),
])
def test_parameter_counts_match_the_videomamba_paper(name, paper_millions):
    model = build(name)
    assert abs(count(model) / 1e6 - paper_millions) / paper_millions < 0.05


def test_registry_errors_suggest_the_nearest_name():
    with pytest.raises(ValueError, match="did you mean 'videomamba_tiny'"):
        build("videomamba_tiyn")
    with pytest.raises(TypeError, match="building model 'vit_tiny'"):
        build("vit_tiny", not_a_parameter=1)


@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_runs_on_video_and_image(name):
    torch.manual_seed(0)
    small = {**SMALL, "num_heads": 2} if name.startswith("vit") else SMALL
    model = build(name, **small).eval()
    clip = torch.randn(2, 3, 4, 32, 48)  # grid (2, 2, 3): 12 tokens
    image = torch.randn(2, 3, 1, 32, 48)  # grid (1, 2, 3)
    keep = torch.tensor([[0, 3, 4, 9], [1, 2, 7, 11]])
    with torch.no_grad():
        assert model(clip).shape == (2, 12, 32)
        assert model(image).shape == (2, 6, 32)
        assert model(clip, keep=keep).shape == (2, 4, 32)
        assert model(image, keep=torch.tensor([[0, 2, 5], [1, 3, 4]])).shape == (2, 3, 32)


@pytest.mark.slow
@pytest.mark.parametrize("name", list_models())
def test_full_size_forward_on_16_frames_224(name):
    """The registered sizes themselves on the issue's clip and an image (reduced depth keeps it
    fast: depth only repeats the block that runs here)."""
    model = build(name, depth=1).eval()
    with torch.no_grad():
        tokens = model(torch.randn(1, 3, 16, 224, 224))
        assert tokens.shape == (1, 8 * 14 * 14, model.embed_dim)
        keep = torch.arange(0, 8 * 14 * 14, 10)[None]
        assert model(torch.randn(1, 3, 16, 224, 224), keep=keep).shape == (1, keep.shape[1], model.embed_dim)
        assert model(torch.randn(1, 3, 1, 224, 224)).shape == (1, 196, model.embed_dim)
    assert torch.isfinite(tokens).all()


def test_keep_is_the_same_as_encoding_only_those_tokens():
    """A context encoder sees only its tokens: with keep, masked tokens cannot influence the output."""
    torch.manual_seed(0)
    model = build("videomamba_tiny", **SMALL).eval()
    clip = torch.randn(1, 3, 2, 32, 32)
    keep = torch.tensor([[0, 2, 3]])
    other = clip.clone()
    other[:, :, :, :16, 16:] = 5.0  # token 1 (row 0, column 1) changes
    with torch.no_grad():
        torch.testing.assert_close(model(clip, keep=keep), model(other, keep=keep))
        assert not torch.allclose(model(clip), model(other))


def test_keep_validation():
    model = build("vit_tiny", embed_dim=32, depth=1, num_heads=2)
    clip = torch.randn(1, 3, 2, 32, 32)
    with pytest.raises(ValueError, match="sorted"):
        model(clip, keep=torch.tensor([[2, 1]]))
    with pytest.raises(ValueError, match="outside"):
        model(clip, keep=torch.tensor([[0, 4]]))
    with pytest.raises(ValueError, match="LongTensor"):
        model(clip, keep=torch.tensor([0, 1]))


def test_patch_embed_is_its_conv3d():
    embed = PatchEmbed3D(patch_size=4, tubelet_size=2, embed_dim=5).double()
    clip = torch.randn(2, 3, 6, 8, 12, dtype=torch.float64)
    tokens, grid = embed(clip)
    assert grid == (3, 2, 3)
    torch.testing.assert_close(tokens, embed.proj(clip).flatten(2).transpose(1, 2))


def test_patch_embed_repeats_images_and_rejects_bad_clips():
    embed = PatchEmbed3D(patch_size=16, tubelet_size=2, embed_dim=8)
    image = torch.randn(1, 3, 1, 32, 32)
    tokens, grid = embed(image)
    assert grid == (1, 2, 2)
    torch.testing.assert_close(tokens, embed(image.repeat(1, 1, 2, 1, 1))[0])
    with pytest.raises(ValueError, match="3 frames is not a multiple of the tubelet size 2"):
        embed(torch.randn(1, 3, 3, 32, 32))
    with pytest.raises(ValueError, match="not a multiple of the patch size 16"):
        embed(torch.randn(1, 3, 2, 30, 32))
    with pytest.raises(ValueError, match="expected 3 channels"):
        embed(torch.randn(1, 1, 2, 32, 32))
    with pytest.raises(ValueError, match="shape \\(B, C, T, H, W\\)"):
        embed(torch.randn(1, 3, 32, 32))


def test_sincos_positions_are_distinct_and_follow_the_grid():
    pos = sincos_3d(48, (2, 3, 4))
    assert pos.shape == (24, 48)
    assert torch.cdist(pos, pos).add(torch.eye(24)).min() > 0.1  # no two positions coincide
    # Raster order: tokens 0 and 12 differ only in time, so only the time channels differ.
    diff = (pos[0] - pos[12]).abs()
    assert diff[:16].sum() > 0 and diff[16:].sum() == 0
    assert sincos_3d(50, (1, 2, 2)).shape == (4, 50)  # widths not divisible by 6 are cut


def test_sincos_positions_are_made_once_per_device_and_dtype():
    # A copy per forward would be a host-to-device copy per forward on the GPU, which syncs.
    half = sincos_3d(48, (2, 3, 4), "cpu", torch.bfloat16)
    assert half is sincos_3d(48, [2, 3, 4], torch.device("cpu"), torch.bfloat16)
    assert half.dtype == torch.bfloat16 and torch.equal(half, sincos_3d(48, (2, 3, 4)).to(torch.bfloat16))


def test_mixer_initialisation_follows_mamba_ssm():
    torch.manual_seed(0)
    mixer = MambaMixer(64, scan="bi")
    direction = mixer.directions[1]
    assert direction.dt_proj.weight.shape == (64 * 2, math.ceil(64 / 16))
    dt = torch.nn.functional.softplus(direction.dt_proj.bias)
    assert dt.min() >= 1e-3 * 0.999 and dt.max() <= 1e-1 * 1.001
    torch.testing.assert_close(direction.A_log[0].exp(), torch.arange(1, 17).float())
    assert torch.all(direction.D == 1)
    assert direction.A_log._no_weight_decay and direction.D._no_weight_decay


def test_model_init_keeps_dt_and_rescales_out_proj():
    torch.manual_seed(0)
    model = build("videomamba_tiny", embed_dim=64, depth=8)
    mixer = model.stack.blocks[0].mixer
    dt = torch.nn.functional.softplus(mixer.directions[0].dt_proj.bias)
    assert dt.min() >= 1e-3 * 0.999  # not zeroed by the model-level init
    fan_in = mixer.out_proj.weight.shape[1]
    bound = 1 / math.sqrt(fan_in) / math.sqrt(8)  # kaiming_uniform(a=sqrt(5)) / sqrt(depth)
    assert mixer.out_proj.weight.abs().max() <= bound * 1.0001
    assert mixer.out_proj.weight.abs().max() > bound * 0.9


@pytest.mark.parametrize("scan", ["uni", "bi", "quad"])
def test_scan_modes_have_the_expected_receptive_field(scan):
    """uni is causal in raster order; bi and quad see the whole sequence."""
    torch.manual_seed(0)
    mixer = MambaMixer(16, scan=scan).double()
    grid = (1, 3, 3)
    tokens = torch.randn(1, 9, 16, dtype=torch.float64, requires_grad=True)
    out = mixer(tokens, col_order=column_order(grid, None, 1, "cpu"))
    out[0, 4].sum().backward()  # the centre token
    influenced = tokens.grad[0].abs().sum(-1) > 0
    if scan == "uni":
        assert influenced[:5].all() and not influenced[5:].any()
    else:
        assert influenced.all()


def test_quad_scan_reads_columns():
    """With only the forward column direction left, the output at (h=0, w=1) depends on the tokens
    before it in column-major order, (0,0) (1,0) (2,0), and on nothing after it."""
    torch.manual_seed(0)
    mixer = MambaMixer(8, scan="quad").double()
    for k in (0, 1, 3):  # silence every direction but the forward column scan
        for param in mixer.directions[k].parameters():
            param.data.zero_()
    tokens = torch.randn(1, 9, 8, dtype=torch.float64, requires_grad=True)
    out = mixer(tokens, col_order=column_order((1, 3, 3), None, 1, "cpu"))
    out[0, 1].sum().backward()
    influenced = (tokens.grad[0].abs().sum(-1) > 0).nonzero().flatten().tolist()
    assert influenced == [0, 1, 3, 6]


def test_column_order_with_keep():
    keep = torch.tensor([[0, 1, 3, 4]])  # (0,0) (0,1) (1,0) (1,1) of a 2x2... in a 3x3 grid
    order = column_order((1, 3, 3), keep, 1, "cpu")
    assert order.tolist() == [[0, 2, 1, 3]]  # (0,0) (1,0) (0,1) (1,1)
    full = column_order((1, 2, 3), None, 2, "cpu")
    assert full.shape == (2, 6) and full[0].tolist() == [0, 3, 1, 4, 2, 5]


def test_expand_uni_checkpoint_to_quad():
    torch.manual_seed(0)
    uni = build("mambamlp_base", embed_dim=32, depth=2, scan="uni")
    quad = build("mambamlp_base", embed_dim=32, depth=2, scan="quad")
    quad.load_state_dict(expand_uni_state_dict(uni.state_dict(), "quad"))
    for k in range(4):
        torch.testing.assert_close(quad.stack.blocks[1].mixer.directions[k].x_proj.weight,
                                   uni.stack.blocks[1].mixer.directions[0].x_proj.weight)
    with pytest.raises(ValueError, match="not from a uni"):
        expand_uni_state_dict(quad.state_dict(), "quad")


def test_residual_stream_is_fp32_under_bf16_autocast():
    model = build("videomamba_tiny", **SMALL)
    seen = []
    model.stack.blocks[1].register_forward_hook(lambda m, i, o: seen.append(o[1].dtype))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.randn(1, 3, 2, 32, 32))
    assert seen == [torch.float32]
    assert torch.isfinite(out.float()).all()


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    model = build("videomamba_tiny", **SMALL, use_cls_token=True)
    tokens, cls = model.forward_features(torch.randn(2, 3, 2, 32, 32))
    (tokens.square().mean() + cls.square().mean()).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing, missing


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["videomamba_tiny", "vit_tiny", "mambamlp_base"])
def test_models_run_on_cuda_with_the_torch_backend(name):
    overrides = {"depth": 2}
    if name.startswith("videomamba") or name.startswith("mambamlp"):
        overrides["scan_backend"] = "torch"
    model = build(name, **overrides).cuda()
    clip = torch.randn(2, 3, 16, 224, 224, device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = model(clip)
        out.float().mean().backward()
    assert out.shape == (2, 1568, model.embed_dim) and torch.isfinite(out.float()).all()


def assert_checkpointing_is_exact(name, device, **overrides):
    """Activation checkpointing trades memory for compute; it must not change the function,
    stochastic depth included (the recomputation replays the same random draws)."""
    torch.manual_seed(0)
    plain = build(name, depth=3, drop_path=0.5, **overrides).to(device)
    checkpointed = build(name, depth=3, drop_path=0.5, checkpoint_blocks=2, **overrides).to(device)
    checkpointed.load_state_dict(plain.state_dict())
    clip = torch.randn(2, 3, 4, 32, 32, device=device)
    results, saved_bytes = [], []
    for model in (plain, checkpointed):
        torch.manual_seed(1)
        saved = []

        def keep(t):  # what autograd keeps from the forward for the backward
            saved.append(t.numel() * t.element_size())
            return t

        with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
            out = model(clip)
        out.square().mean().backward()
        results.append((out.detach(), [p.grad.clone() for p in model.parameters()]))
        saved_bytes.append(sum(saved))
    assert saved_bytes[1] < 0.6 * saved_bytes[0], saved_bytes  # two of three blocks keep only their inputs
    torch.testing.assert_close(results[1][0], results[0][0])
    for got, want in zip(results[1][1], results[0][1]):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("name", ["videomamba_tiny", "vit_tiny"])
def test_checkpointed_blocks_give_the_same_outputs_and_gradients(name):
    assert_checkpointing_is_exact(name, "cpu")


def test_checkpoint_blocks_beyond_the_depth_is_refused():
    with pytest.raises(ValueError, match=r"checkpoint_blocks must be between 0 and the depth \(3\), got 4"):
        build("videomamba_tiny", depth=3, checkpoint_blocks=4)


@pytest.mark.gpu
def test_checkpointed_blocks_with_the_fused_triton_direction():
    """The fused direction's own recomputation nested in the blocks' (fp32, deterministic kernels)."""
    assert_checkpointing_is_exact("videomamba_tiny", "cuda", scan_backend="triton")
