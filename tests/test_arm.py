"""ARM: cluster regrouping and order, the block-causal structure, pixel targets, config checks, training
through the engine (TensorBoard pictures included), the prediction PNG, probing the checkpoint and
the 1 -> 4 scan expansion of its encoder for fine-tuning."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from einops import rearrange
from PIL import Image

from evals import attentive_probe as ap
from vjm.config import ConfigError, config_from_dict, load_config
from vjm.models import build, expand_uni_state_dict
from vjm.models.clusters import cluster_grid, from_clusters, to_clusters
from vjm.objectives import ARM, build_objective, show
from vjm.objectives.arm import block_causal_mask, default_taps
from vjm.objectives.pictures import grid_size
from vjm.train.checkpoint import load_checkpoint

from test_probe import probe_config
from test_train import read_losses, tiny_config
from training_helpers import fit_recording_pictures, shrunk_toy_overrides

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def one_thread():
    # Tiny models: on 2 shared cores, thread hand-offs cost more than the work.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def arm_section(cluster_size: int = 2, width: int = 32, depth: int = 2, num_heads: int = 4, **keys) -> dict:
    return {"name": "arm", "cluster_size": cluster_size,
            "decoder": {"width": width, "depth": depth, "num_heads": num_heads}, **keys}


def arm_config(tmp_path: Path = Path("unused"), frames: int = 4, size: int = 64, cluster_size: int = 2,
               model: dict | None = None, **keys) -> dict:
    """tiny_config with a 32-wide, 3-block MambaMLP (one causal scan) and a 2-block decoder."""
    raw = tiny_config(tmp_path, tmp_path, data={"frames_per_clip": frames, "crop_size": size, "toy_size": size})
    raw["model"] = {"name": "mambamlp_tiny", "embed_dim": 32, "depth": 3, **(model or {})}
    raw.update(objective=arm_section(cluster_size, **keys))
    del raw["masks"]  # ARM draws none
    return raw


def tiny_arm(frames: int = 4, size: int = 64, **keys) -> ARM:
    torch.manual_seed(0)
    return build_objective(config_from_dict(arm_config(frames=frames, size=size, **keys))).eval()


# ------------------------------------------------------------------------------------ clusters


def test_clusters_are_tubelet_slices_of_k_by_k_patches_ordered_t_row_column():
    grid, k = (2, 4, 6), 2  # T' = 2 slices of 4 x 6 patches: 2 x 3 clusters each
    index = torch.arange(2 * 4 * 6).view(1, -1)  # raster index = t * 24 + h * 6 + w
    clusters = to_clusters(index, grid, k)[0]
    assert clusters.shape == (12, 4)
    expected = [[t * 24 + (2 * r + i) * 6 + (2 * c + j) for i in range(2) for j in range(2)]
                for t in range(2) for r in range(2) for c in range(3)]
    assert clusters.tolist() == expected  # (t, cluster row, cluster column); patches row-major inside
    assert clusters[1].tolist() == [2, 3, 8, 9] and clusters[6].tolist() == [24, 25, 30, 31]


def test_regrouping_into_clusters_and_back_is_the_identity():
    tokens = torch.randn(3, 2 * 4 * 6, 5, 7)  # anything per token: features, pixels (C, P)
    clusters = to_clusters(tokens, (2, 4, 6), 2)
    assert clusters.shape == (3, 12, 4, 5, 7)
    assert torch.equal(from_clusters(clusters, (2, 4, 6), 2), tokens)


def test_an_image_is_regrouped_exactly_as_arms_code_does():
    """T' = 1, 12 x 12 patches, k = 4: ARM's 9 clusters of 16 patches (its rearrange of the patch grid)."""
    tokens = torch.randn(2, 144, 8)
    arm = rearrange(tokens.view(2, 12, 12, 8), "b (h p1) (w p2) c -> b (h w) (p1 p2) c", p1=4, p2=4)
    assert torch.equal(to_clusters(tokens, (1, 12, 12), 4), arm)


def test_a_grid_that_k_does_not_divide_is_a_clear_error():
    with pytest.raises(ValueError, match=r"a token grid of 6 x 6 patches \(H' x W'\) does not split into clusters "
                                         r"of 4 x 4 patches; choose a cluster size that divides both"):
        cluster_grid((1, 6, 6), 4)
    raw = arm_config(size=96, cluster_size=4)  # 6 x 6 patches
    with pytest.raises(ConfigError, match=r"'objective.cluster_size' = 4 does not divide the 6 x 6 patches of a frame "
                                          r"\('data.crop_size' / 'model.patch_size'\); use one of \[1, 2, 3, 6\]"):
        config_from_dict(raw)
    with pytest.raises(ConfigError, match="makes the whole clip one cluster: nothing is left to predict"):
        config_from_dict(arm_config(frames=1, size=32, cluster_size=2))
    model = tiny_arm(size=64, cluster_size=2)
    with pytest.raises(ValueError, match="does not split into clusters of 2 x 2 patches"):
        model({"clip": torch.randn(1, 3, 4, 48, 64)})  # 3 x 4 patches


def test_the_config_refuses_an_encoder_that_is_not_causal_and_taps_it_lacks():
    with pytest.raises(ConfigError, match=r"'model.name' = 'videomamba_tiny': ARM needs a causal encoder, one forward "
                                          r"scan .* but this one is scan 'bi'"):
        config_from_dict(arm_config(model={"name": "videomamba_tiny"}))
    with pytest.raises(ConfigError, match="but this one is VisionTransformer"):
        config_from_dict(arm_config(model={"name": "vit_tiny", "embed_dim": 48, "depth": 3}))
    with pytest.raises(ConfigError, match=r"'objective.decoder.taps' = \[2, 4\]: the encoder has blocks 1 to 3"):
        config_from_dict(arm_config(decoder={"width": 32, "depth": 2, "num_heads": 4, "taps": [2, 4]}))
    assert default_taps(12) == [6, 8, 10, 12] and default_taps(24) == [12, 16, 20, 24]
    assert default_taps(3) == [2, 3]  # the last block always, no repeats
    assert tiny_arm().taps == [2, 3]


# -------------------------------------------------------------------------------- block-causal


def test_the_block_causal_mask_lets_a_query_see_earlier_clusters_only():
    mask = block_causal_mask(clusters=4, per_cluster=2)  # queries: clusters 2..4; keys: clusters 1..3
    expected = torch.tensor([[1, 0, 0], [1, 1, 0], [1, 1, 1]], dtype=torch.bool)
    assert torch.equal(mask, expected.repeat_interleave(2, 0).repeat_interleave(2, 1))


@pytest.mark.parametrize("frames", [1, 4], ids=["image", "video"])
def test_changing_a_cluster_changes_no_prediction_of_it_or_of_earlier_clusters(frames):
    """The prediction of cluster c may depend on the clusters before c only: changing the input from
    cluster j on leaves the predictions of clusters 2..j, and the losses of clusters 2..j-1, exactly as
    they were, and changes the prediction of cluster j + 1."""
    model = tiny_arm(frames=frames, size=64)
    grid, k = model.encoder.patch_embed.grid((1, 3, frames, 64, 64)), 2
    clip = torch.randn(2, 3, frames, 64, 64)
    to_tokens = "b c (t pt) (h ph) (w pw) -> b (t h w) c pt ph pw"
    clusters = to_clusters(rearrange(clip, to_tokens, t=grid[0], ph=16, pw=16), grid, k)  # (B, n, k * k, ...)
    n = clusters.shape[1]

    def per_cluster(values):  # (B, (n - 1) k^2, P) of clusters 2..n -> (B, n, k^2, P), cluster 1 empty
        return torch.cat([torch.full_like(values[:, :k * k], float("nan")), values], 1).view(2, n, k * k, -1)

    with torch.no_grad():
        pred, targets = per_cluster(model.predict(clip)[0]), per_cluster(model.targets(clip))
        for j in range(1, n):  # 0-based: clusters j.. change
            changed = clusters.clone()
            changed[:, j:] += torch.randn_like(changed[:, j:]) * 3
            other = rearrange(from_clusters(changed, grid, k), "b (t h w) c pt ph pw -> b c (t pt) (h ph) (w pw)",
                              t=grid[0], h=grid[1], w=grid[2])
            pred_other, targets_other = per_cluster(model.predict(other)[0]), per_cluster(model.targets(other))
            assert torch.equal(pred_other[:, 1:j + 1], pred[:, 1:j + 1]), f"changing clusters {j}.. leaks backwards"
            if j + 1 < n:
                assert not torch.allclose(pred_other[:, j + 1], pred[:, j + 1])  # it sees cluster j
            before = (pred[:, 1:j] - targets[:, 1:j]).square().mean(dim=(2, 3))
            after = (pred_other[:, 1:j] - targets_other[:, 1:j]).square().mean(dim=(2, 3))
            assert torch.equal(after, before)


# -------------------------------------------------------------------------------------- targets


def test_targets_are_the_next_clusters_per_patch_normalised_pixels():
    model = tiny_arm(frames=1, size=64)
    torch.manual_seed(1)
    image = torch.randn(2, 3, 1, 64, 64) * 2 + 1
    targets = model.targets(image)  # clusters 2..4 of 2 x 2 patches, in cluster order
    assert targets.shape == (2, 3 * 4, 3 * 16 * 16)
    # Cluster 2 is the top-right one (patch rows 0-1, columns 2-3); its 4th patch is (row 1, column 3).
    patch = image[1, :, 0, 16:32, 48:64].double()
    expected = (patch - patch.mean()) / (patch.var() + 1e-6).sqrt()  # over the patch's pixels and channels
    torch.testing.assert_close(targets[1, 3].double(), expected.flatten(), atol=1e-5, rtol=1e-5)
    # Video: per channel over each tubelet (VideoMAE's), clusters ordered by time slice first.
    model = tiny_arm(frames=4, size=64)
    clip = torch.randn(1, 3, 4, 64, 64) * torch.tensor([1.0, 5.0, 0.1]).view(1, 3, 1, 1, 1)
    targets = model.targets(clip)  # 2 slices x 4 clusters, less the first cluster
    # Slice 2's bottom-left cluster is the clip's 7th (0-based 6; targets start at the 2nd); its 2nd patch:
    tubelet = clip[0, :, 2:4, 32:48, 16:32].double()
    mean = tubelet.mean(dim=(1, 2, 3), keepdim=True)
    std = (tubelet.var(dim=(1, 2, 3), keepdim=True) + 1e-6).sqrt()
    torch.testing.assert_close(targets[0, (6 - 1) * 4 + 1].double(), ((tubelet - mean) / std).flatten(),
                               atol=1e-5, rtol=1e-5)


def test_the_loss_is_the_mse_of_predictions_of_clusters_two_to_n():
    model = tiny_arm(frames=4, size=64)
    clip = torch.randn(2, 3, 4, 64, 64)
    loss, metrics = model({"clip": clip})
    pred, _ = model.predict(clip)
    torch.testing.assert_close(loss, (pred - model.targets(clip)).square().mean())
    assert set(metrics) == {"loss", "mse"} and pred.shape == (2, 7 * 4, 3 * 2 * 16 * 16)
    loss.backward()  # every weight is trained (DDP refuses unused ones): the encoder's final norm too
    assert [name for name, p in model.named_parameters() if p.grad is None or not p.grad.any()] == []


# ------------------------------------------------------------------------------ through the engine


@pytest.fixture(scope="module")
def trained(tmp_path_factory, toy_root):
    """configs/arm_tiny.yaml shrunk to seconds: 16 steps of a 32-wide, 4-block MambaMLP on 32 x 32 toy clips."""
    run_dir = tmp_path_factory.mktemp("arm_run")
    cfg = load_config(ROOT / "configs" / "arm_tiny.yaml", shrunk_toy_overrides(run_dir, toy_root) + [
        "model.depth=4", "objective.decoder={width: 32, depth: 2, num_heads: 4}", "optim.warmup_steps=2", "optim.lr=3e-3",
        "train.steps_per_epoch=8", "train.checkpoint_every=8", "train.log_every=1", "train.image_every=8",
    ])
    return cfg, fit_recording_pictures(cfg)


def test_the_toy_config_trains_the_loss_falls_and_tensorboard_gets_pictures(trained):
    cfg, pictures = trained
    losses = read_losses(cfg.run_dir)
    assert sorted(losses) == list(range(1, 17))
    assert sum(losses[s] for s in (14, 15, 16)) < sum(losses[s] for s in (1, 2, 3))
    assert [step for step, _ in pictures] == [8, 16]  # the batch's first 4 clips: input, predicted
    assert pictures[0][1] == {"prediction": (3, *grid_size(4, 2, 4, 32, 32)[::-1])}
    state = load_checkpoint(cfg.run_dir / "latest.pt")
    assert state["objective"] == "arm" and set(state["models"]) == {"encoder", "decoder"}


def test_show_writes_the_prediction_png(trained, tmp_path, capsys):
    cfg, _ = trained
    out = tmp_path / "arm.png"
    show.main(["--checkpoint", str(cfg.run_dir / "latest.pt"), "--out", str(out), "--num", "2"])
    assert capsys.readouterr().out.strip() == str(out)
    with Image.open(out) as picture:
        assert picture.size == grid_size(2, 2, 4, 32, 32) and picture.mode == "RGB"
        assert len(np.unique(np.asarray(picture).reshape(-1, 3), axis=0)) > 100  # not blank


def test_the_probe_takes_an_arm_checkpoint_without_flags(trained, toy_root, tmp_path, capsys):
    cfg, _ = trained
    config = tmp_path / "probe.yaml"
    config.write_text(json.dumps(probe_config(toy_root, train={"epochs": 1})))  # JSON is YAML
    ap.main(["--fname", str(config), "--checkpoint", str(cfg.run_dir / "latest.pt"), "--device", "cpu"])
    results = json.loads(Path(capsys.readouterr().out.strip().splitlines()[-1]).read_text())
    assert (results["encoder"]["objective"], results["encoder"]["which"]) == ("arm", "encoder")
    assert 0 <= results["top1"] <= 100


def test_the_pretrained_encoder_expands_to_four_scans_for_fine_tuning(trained):
    """ARM fine-tunes with 4 scans, each initialised from the one pre-trained scan."""
    cfg, _ = trained
    uni = load_checkpoint(cfg.run_dir / "latest.pt")["models"]["encoder"]
    quad = build(cfg.model.name, embed_dim=cfg.model.embed_dim, depth=cfg.model.depth, scan="quad")
    quad.load_state_dict(expand_uni_state_dict(uni, "quad"))  # strict: every tensor present, none left over
    expanded = quad.state_dict()
    for key, value in uni.items():
        if ".directions.0." in key:
            for k in range(4):
                assert torch.equal(expanded[key.replace(".directions.0.", f".directions.{k}.")], value), key
        else:
            assert torch.equal(expanded[key], value), key  # shared: patch embedding, projections, MLP, norms
    trained_dt = uni["stack.blocks.0.mixer.directions.0.dt_proj.bias"]
    assert not torch.equal(trained_dt, build(cfg.model.name, embed_dim=32, depth=4).state_dict()[
        "stack.blocks.0.mixer.directions.0.dt_proj.bias"])  # pre-trained weights, not a fresh init
    with torch.no_grad():
        tokens = quad(torch.randn(2, 3, 4, 32, 32))
    assert tokens.shape == (2, 2 * 2 * 2, 32) and torch.isfinite(tokens).all()
