"""MAE / VideoMAE: random masks, pixel targets, the decoder's ordering, the masked-only loss, training
through the engine (TensorBoard pictures included), the reconstruction PNG, probing the checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from evals import attentive_probe as ap
from vjm.config import ConfigError, config_from_dict, load_config
from vjm.data.toy import ensure_toy_dataset
from vjm.masks import build_mask_generator
from vjm.models import sincos_3d
from vjm.objectives import MAE, build_objective
from vjm.objectives import show
from vjm.objectives.pictures import grid_size
from vjm.objectives.pixels import patchify, pixel_targets, unpatchify
from vjm.train.checkpoint import load_checkpoint, save_checkpoint
from vjm.train.distributed import DistInfo
from vjm.train.engine import Trainer

from test_probe import probe_config
from test_train import read_losses, tiny_config
from training_helpers import fit_recording_pictures, shrunk_toy_overrides

ROOT = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_thread")


def mae_section(width: int = 32, depth: int = 1, num_heads: int = 4, **keys) -> dict:
    return {"name": "mae", "decoder": {"width": width, "depth": depth, "num_heads": num_heads}, **keys}


def tiny_mae(frames: int = 4, **keys) -> MAE:
    """A 32-wide, 2-block VideoMamba with a 1-block decoder, for 32 x 32 clips of ``frames`` frames."""
    torch.manual_seed(0)
    raw = tiny_config(Path("unused"), Path("unused"), data={"frames_per_clip": frames})
    raw.update(masks=[{"kind": "random", "ratio": 0.75}], objective=mae_section(**keys))
    return build_objective(config_from_dict(raw))


def tiny_masks(grid, batch: int, ratio: float = 0.75, seed: int = 0):
    return [build_mask_generator("random", grid, ratio=ratio).sample(batch, torch.Generator().manual_seed(seed))]


# ----------------------------------------------------------------------------------------- masks


def test_random_masks_hold_the_ratio_with_equal_counts_and_differ_per_sample():
    grid = (4, 4, 4)
    visible, masked = build_mask_generator("random", grid, ratio=0.75).sample(64, torch.Generator().manual_seed(0))
    assert visible.shape == (64, 16) and masked.shape == (64, 48)  # equal counts, nothing dropped
    union = torch.cat([visible, masked], dim=1).sort(dim=1).values
    assert torch.equal(union, torch.arange(64).expand(64, -1))  # disjoint and complete
    assert len({tuple(row.tolist()) for row in visible}) == 64  # each sample its own mask
    # Spacetime-agnostic: every token is masked about 75% of the time, and frames are not alike.
    frequency = torch.zeros(64).index_add_(0, masked.flatten(), torch.ones(masked.numel())) / 64
    assert 0.55 < frequency.min() and frequency.max() < 0.95
    per_frame = masked.div(16, rounding_mode="floor")
    assert not all(torch.equal(torch.bincount(row, minlength=4), torch.full((4,), 12)) for row in per_frame)
    with pytest.raises(ValueError, match="parameter 'ratio' must be a number in"):
        build_mask_generator("random", grid, ratio=1.0)
    with pytest.raises(ValueError, match="leaves no context"):
        build_mask_generator("random", (1, 2, 2), ratio=0.95)


def test_mae_config_checks_decoder_heads_and_mask_kinds(tmp_path):
    raw = tiny_config(tmp_path, tmp_path)
    raw["objective"] = mae_section(width=30, num_heads=4)
    del raw["masks"]  # the objective's default: MAE's random 0.75
    with pytest.raises(ConfigError, match="'objective.decoder.width' = 30 is not divisible by"):
        config_from_dict(raw)
    raw["objective"] = mae_section()
    assert config_from_dict(raw).masks == [{"kind": "random", "ratio": 0.75}]
    raw["masks"] = [{"kind": "custom_blocks"}]
    with pytest.raises(ConfigError, match="does not take mask kind 'custom_blocks'; use one of random, tube"):
        config_from_dict(raw)


# ---------------------------------------------------------------------------------------- targets


def test_image_targets_normalise_one_frames_patch_over_its_pixels_and_channels():
    torch.manual_seed(0)
    image = torch.randn(2, 3, 1, 32, 48) * 3 + 1  # T = 1: the patch embedding repeats it; targets do not
    targets = pixel_targets(image, patch_size=16, tubelet_size=2)
    assert targets.shape == (2, 6, 3 * 16 * 16)
    patch = image[1, :, 0, 16:32, 16:32].double()  # token (h=1, w=1) of sample 1 = index 1 * 3 + 1
    expected = (patch - patch.mean()) / (patch.var() + 1e-6).sqrt()
    torch.testing.assert_close(targets[1, 4].double(), expected.flatten(), atol=1e-5, rtol=1e-5)


def test_video_targets_normalise_each_channel_of_a_tubelet():
    torch.manual_seed(0)
    clip = torch.randn(1, 3, 4, 32, 32) * torch.tensor([1.0, 5.0, 0.1]).view(1, 3, 1, 1, 1)
    targets = pixel_targets(clip, patch_size=16, tubelet_size=2)
    assert targets.shape == (1, 8, 3 * 2 * 16 * 16)
    tubelet = clip[0, :, 2:4, 0:16, 16:32].double()  # token (t=1, h=0, w=1) = 1 * 4 + 0 * 2 + 1
    mean = tubelet.mean(dim=(1, 2, 3), keepdim=True)
    std = (tubelet.var(dim=(1, 2, 3), keepdim=True) + 1e-6).sqrt()
    torch.testing.assert_close(targets[0, 5].double(), ((tubelet - mean) / std).flatten(), atol=1e-5, rtol=1e-5)
    # Raw pixels: the clip's own values, in the same layout, and patchify inverts exactly.
    raw = pixel_targets(clip, 16, 2, norm_pix=False)
    torch.testing.assert_close(raw[0, 5], clip[0, :, 2:4, 0:16, 16:32].flatten())
    assert torch.equal(unpatchify(patchify(clip, 16, 2), (2, 2, 2), 16), clip)


def test_a_video_clip_to_an_image_model_is_refused():
    model = tiny_mae(frames=1)
    assert model.decoder.proj.out_features == 3 * 16 * 16  # one frame's patch
    clip = torch.randn(2, 3, 4, 32, 32)
    with pytest.raises(ValueError, match="predicts 768 pixel values per token, but tokens of this 4-frame clip "
                                         "hold 1536: it was built for images"):
        model({"clip": clip, "masks": tiny_masks((2, 2, 2), 2)})


# -------------------------------------------------------------------------------- decoder and loss


def test_decoder_merges_visible_and_mask_tokens_by_position():
    """With the encoder replaced by 'each token's index', an identity decoder body and a zero mask
    token, the decoder's sequence must be, in raster order, index + position for visible tokens and
    position alone for masked ones; and its outputs must be the masked tokens' positions in order."""
    model = tiny_mae(frames=4, width=32)
    grid, width = (2, 2, 2), 32
    seen = []
    model.encoder.forward = lambda clip, keep: keep.float()[..., None].expand(-1, -1, width)
    model.decoder.body = type("Record", (torch.nn.Module,), {"forward": lambda self, x: seen.append(x) or x})()
    model.decoder.proj = torch.nn.Identity()
    with torch.no_grad():
        model.decoder.embed.weight.copy_(torch.eye(width)), model.decoder.embed.bias.zero_()
        model.decoder.mask_tokens.zero_()
    visible, masked = torch.tensor([[1, 6], [0, 3]]), torch.tensor([[0, 2, 7], [1, 4, 5]])
    pred, _ = model.predict(torch.randn(2, 3, 4, 32, 32), visible, masked)
    pos = sincos_3d(width, grid)
    for b in range(2):
        order = sorted(visible[b].tolist() + masked[b].tolist())  # tokens that are neither are left out
        expected = torch.stack([pos[n] + (n if n in visible[b].tolist() else 0) for n in order])
        torch.testing.assert_close(seen[0][b], expected)
        torch.testing.assert_close(pred[b], pos[masked[b]])


def test_loss_is_the_mse_of_masked_tokens_only():
    model = tiny_mae(frames=4)
    clip = torch.randn(2, 3, 4, 32, 32)
    masks = tiny_masks((2, 2, 2), 2)
    visible, masked = masks[0]
    loss, metrics = model({"clip": clip, "masks": masks})
    targets = model.targets(clip)
    pred, _ = model.predict(clip, visible, masked)
    expected = torch.stack([(pred[b] - targets[b, masked[b]]).square().mean() for b in range(2)]).mean()
    torch.testing.assert_close(loss, expected)
    assert set(metrics) == {"loss", "mse"}

    real_targets = model.targets

    def perturbed(rows):
        def targets_with_noise(clip):
            values = real_targets(clip).clone()
            for b in range(2):
                values[b, rows[b]] += 100.0
            return values
        return targets_with_noise

    model.targets = perturbed(visible)
    assert torch.equal(model({"clip": clip, "masks": masks})[0], loss)  # visible targets do not count
    model.targets = perturbed(masked[:, :1])
    assert model({"clip": clip, "masks": masks})[0] > loss + 100


# ------------------------------------------------------------------------------------ through the engine


@pytest.fixture(scope="module")
def trained(tmp_path_factory, toy_root):
    """configs/mae_tiny.yaml shrunk to seconds: 12 steps of a 32-wide VideoMamba on 32 x 32 toy clips."""
    run_dir = tmp_path_factory.mktemp("mae_run")
    cfg = load_config(ROOT / "configs" / "mae_tiny.yaml", shrunk_toy_overrides(run_dir, toy_root) + [
        "model.depth=2", "objective.decoder={width: 32, depth: 1, num_heads: 4}", "optim.warmup_steps=2",
        "train.steps_per_epoch=6", "train.checkpoint_every=6", "train.log_every=1", "train.image_every=4",
    ])
    return cfg, fit_recording_pictures(cfg)


def test_the_toy_config_trains_the_loss_falls_and_tensorboard_gets_pictures(trained):
    cfg, pictures = trained
    losses = read_losses(cfg.run_dir)
    assert sorted(losses) == list(range(1, 13))
    assert sum(losses[s] for s in (10, 11, 12)) < sum(losses[s] for s in (1, 2, 3))
    # Every train.image_every steps: the batch's first 4 clips, 3 views each, 4 frames of 32 x 32.
    assert [step for step, _ in pictures] == [4, 8, 12]
    assert pictures[0][1] == {"reconstruction": (3, *grid_size(4, 3, 4, 32, 32)[::-1])}
    state = load_checkpoint(cfg.run_dir / "latest.pt")
    assert state["objective"] == "mae" and set(state["models"]) == {"encoder", "decoder"}


def test_images_from_an_image_folder_train_as_one_frame_clips(trained, tmp_path, toy_root):
    """MAE's image recipe (configs/mae_in1k_base.yaml) in small: an ImageFolder tree, random masks."""
    lists = ensure_toy_dataset(toy_root, num_train=48, num_val=8, frames=8, size=32, seed=0)  # the fixture's
    raw = tiny_config(tmp_path, toy_root, data={"dataset": "image", "train": [str(lists["image_train_folder"])],
                                                "frames_per_clip": 1}, train={"epochs": 1, "steps_per_epoch": 2})
    raw.update(masks=[{"kind": "random", "ratio": 0.75}], objective=mae_section())
    trainer = Trainer(config_from_dict(raw), DistInfo())
    result = trainer.fit()
    assert trainer.objective.decoder.proj.out_features == 3 * 16 * 16  # one frame's patch
    assert np.isfinite(result["loss"]) and result["skipped_files"] == 0


def test_show_writes_the_reconstruction_png(trained, tmp_path, capsys):
    cfg, _ = trained
    out = tmp_path / "recon.png"
    show.main(["--checkpoint", str(cfg.run_dir / "latest.pt"), "--out", str(out), "--num", "2"])
    assert capsys.readouterr().out.strip() == str(out)
    with Image.open(out) as picture:
        assert picture.size == grid_size(2, 3, 4, 32, 32) and picture.mode == "RGB"
        # Not blank: the input rows hold the clips' colours.
        assert len(np.unique(np.asarray(picture).reshape(-1, 3), axis=0)) > 100


def test_show_refuses_an_objective_without_pictures(tmp_path, toy_root):
    cfg = config_from_dict(tiny_config(tmp_path, toy_root))  # V-JEPA
    models = {name: module.state_dict() for name, module in build_objective(cfg).checkpoint_modules().items()}
    path = save_checkpoint({"config": cfg.to_dict(), "objective": "vjepa", "step": 0, "models": models},
                           tmp_path / "vjepa.pt")
    with pytest.raises(SystemExit, match="objective 'vjepa' draws no pictures"):
        show.main(["--checkpoint", str(path), "--out", str(tmp_path / "x.png"), "--num", "1"])


def test_the_probe_takes_an_mae_checkpoint_without_flags(trained, toy_root, tmp_path, capsys):
    cfg, _ = trained
    config = tmp_path / "probe.yaml"
    config.write_text(json.dumps(probe_config(toy_root, train={"epochs": 1})))  # JSON is YAML
    ap.main(["--fname", str(config), "--checkpoint", str(cfg.run_dir / "latest.pt"), "--device", "cpu"])
    results = json.loads(Path(capsys.readouterr().out.strip().splitlines()[-1]).read_text())
    assert (results["encoder"]["objective"], results["encoder"]["which"]) == ("mae", "encoder")
    assert 0 <= results["top1"] <= 100
