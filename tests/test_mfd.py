"""MFD: a student learns a frozen vjm teacher's tokens (distill: at masked positions; align: at visible ones)."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from training_helpers import shrunk_toy_overrides

from vjm.config import ConfigError, config_from_dict, load_config
from vjm.masks.attentive import attentive_split
from vjm.objectives import build_objective
from vjm.objectives.mfd import cosine_distance
from vjm.objectives.saliency import dissimilarity, resolve_saliency
from vjm.train.checkpoint import load_checkpoint
from vjm.train.distributed import DistInfo
from vjm.train.engine import Trainer
from vjm.train.optim import build_optimizer

from test_train import read_losses, save_initial_checkpoint, tiny_config

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread")


def save_teacher(path: Path, seed: int = 0, **model) -> Path:
    """A V-JEPA checkpoint of tiny_config's encoder (step 0, weights drawn from ``seed``): the teacher."""
    raw = tiny_config(path.parent, path.parent)
    raw["model"].update(model)
    return save_initial_checkpoint(config_from_dict(raw), path, seed)


def mfd_config(tmp_path: Path, toy_root: Path, teacher: Path, **objective) -> dict:
    raw = tiny_config(tmp_path, toy_root)  # 4 frames of 32^2: a token grid of 2 x 2 x 2
    raw["masks"] = [{"kind": "random", "ratio": 0.5}]
    raw["objective"] = {"name": "mfd", "teacher": {"checkpoint": str(teacher)},
                        "decoder": {"width": 16, "depth": 1, "num_heads": 2}, **objective}
    return raw


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> Path:
    return save_teacher(tmp_path_factory.mktemp("teacher") / "teacher.pt")


def build_mfd(tmp_path, teacher, **objective):
    torch.manual_seed(0)
    return build_objective(config_from_dict(mfd_config(tmp_path, tmp_path, teacher, **objective)))


CLIP = torch.randn(2, 3, 4, 32, 32, generator=torch.Generator().manual_seed(0))
VISIBLE, MASKED = torch.tensor([[0, 1, 2, 3], [0, 2, 4, 6]]), torch.tensor([[4, 5, 6, 7], [1, 3, 5, 7]])
BATCH = {"clip": CLIP, "masks": [(VISIBLE, MASKED)]}


def test_the_teacher_is_frozen_gets_no_gradient_and_stays_out_of_the_checkpoint(tmp_path, teacher):
    mfd = build_mfd(tmp_path, teacher)
    saved = load_checkpoint(teacher)["models"]["target_encoder"]  # V-JEPA's default encoder
    assert all(torch.equal(mfd.teacher.state_dict()[key], value) for key, value in saved.items())
    mfd.train()
    assert not mfd.teacher.training and mfd.encoder.training
    assert not any(p.requires_grad for p in mfd.teacher.parameters())
    loss, metrics = mfd(BATCH)
    loss.backward()
    assert set(metrics) == {"loss", "smooth_l1"}
    assert all(p.grad is None for p in mfd.teacher.parameters())
    assert mfd.encoder.patch_embed.proj.weight.grad.abs().sum() > 0
    optimised = {id(p) for group in build_optimizer(mfd, config_from_dict({}).optim).param_groups
                 for p in group["params"]}
    assert not optimised & {id(p) for p in mfd.teacher.parameters()}
    assert set(mfd.checkpoint_modules()) == {"encoder", "decoder", "teacher_record"}


def test_the_distill_loss_is_smooth_l1_on_masked_tokens_only(tmp_path, teacher):
    mfd = build_mfd(tmp_path, teacher)
    loss, _ = mfd(BATCH)
    targets, _ = mfd.targets(CLIP)
    assert torch.allclose(targets.mean(-1), torch.zeros(2, 8), atol=1e-5)  # layer-normed, no affine
    assert torch.allclose(targets.std(-1, unbiased=False), torch.ones(2, 8), atol=1e-3)
    real_targets = mfd.targets

    def perturbed(rows):
        def targets_with_noise(clip):
            values, saliency = real_targets(clip)
            values = values.clone()
            for b in range(2):
                values[b, rows[b]] += 100.0
            return values, saliency
        return targets_with_noise

    mfd.targets = perturbed(VISIBLE)
    assert torch.equal(mfd(BATCH)[0], loss)  # visible targets do not count
    mfd.targets = perturbed(MASKED[:, :1])
    assert mfd(BATCH)[0] > loss + 10


def test_the_align_loss_is_two_minus_two_cos_of_visible_tokens(tmp_path, teacher):
    assert cosine_distance(torch.tensor([[1.0, 0.0], [0.0, 3.0]]), torch.tensor([[2.0, 0.0], [1.0, 0.0]])) == 1.0
    mfd = build_mfd(tmp_path, teacher, target="align")
    assert set(mfd.checkpoint_modules()) == {"encoder", "projector", "teacher_record"}
    loss, metrics = mfd(BATCH)
    with torch.no_grad():
        student = mfd.projector(mfd.encoder(CLIP, keep=VISIBLE))
        teacher_tokens = mfd.teacher(CLIP)
    by_hand = []
    for b in range(2):
        for k, token in enumerate(VISIBLE[b]):
            s, t = student[b, k], teacher_tokens[b, token]
            by_hand.append(2 - 2 * (s @ t) / (s.norm() * t.norm()))
    torch.testing.assert_close(loss.detach(), torch.stack(by_hand).mean())
    assert set(metrics) == {"loss", "cos_distance"}


def test_attentive_masks_keep_salient_tokens_visible_more_often_and_in_order_of_saliency():
    torch.manual_seed(0)
    saliency = torch.arange(1.0, 9.0).expand(4000, -1)  # 8 tokens, token i weighted i + 1
    visible, masked = attentive_split(saliency, num_visible=2)
    assert visible.shape == (4000, 2) and masked.shape == (4000, 6)
    assert torch.equal(torch.cat([visible, masked], 1).sort(1).values, torch.arange(8).expand(4000, -1))
    assert bool((visible[:, 1:] > visible[:, :-1]).all()) and bool((masked[:, 1:] > masked[:, :-1]).all())
    frequency = torch.zeros(8).index_add_(0, visible.flatten(), torch.ones(8000)) / 4000
    assert bool((frequency[1:] > frequency[:-1]).all()), frequency  # monotone in saliency
    assert frequency[-1] > 0.4 > 2 / 8 > frequency[0]  # the most salient is kept well above chance
    sharper = attentive_split(saliency, num_visible=2, temperature=0.25)[0]
    assert (sharper == 7).any(1).float().mean() > frequency[-1]
    uniform = attentive_split(torch.ones(4000, 8), num_visible=2)[0]
    counts = torch.zeros(8).index_add_(0, uniform.flatten(), torch.ones(8000)) / 4000
    assert torch.allclose(counts, torch.full((8,), 0.25), atol=0.03)  # equal saliency: the ratio, everywhere


def test_saliency_of_tokens_and_of_a_vit_teachers_attention(tmp_path):
    tokens = torch.ones(1, 5, 4)
    tokens[0, 3] = torch.tensor([1.0, -1.0, 1.0, -1.0])  # the one token unlike the others
    assert dissimilarity(tokens).argmax().item() == 3
    from vjm.models import build

    vit, mamba = build("vit_tiny", embed_dim=16, depth=2, num_heads=2), build("videomamba_tiny", embed_dim=16, depth=1)
    assert resolve_saliency("auto", vit) == "attention" and resolve_saliency("auto", mamba) == "dissimilarity"
    with pytest.raises(ValueError, match="'attention' reads a ViT teacher's last attention block, but the teacher "
                                         "is a VideoMamba; use 'dissimilarity'"):
        resolve_saliency("attention", mamba)
    teacher = save_teacher(tmp_path / "vit.pt", name="vit_tiny", embed_dim=48)  # 3 heads, another width
    mfd = build_mfd(tmp_path, teacher, attentive=True)
    assert mfd.saliency == "attention"
    _, saliency = mfd.targets(CLIP)
    assert saliency.shape == (2, 8) and torch.allclose(saliency.sum(1), torch.ones(2))
    loss, metrics = mfd(BATCH)
    assert torch.isfinite(loss) and metrics["saliency_kept"] > 0


def test_a_teacher_on_another_token_grid_needs_grid_match_pool(tmp_path):
    fine = save_teacher(tmp_path / "patch8.pt", patch_size=8)  # a 2 x 4 x 4 grid for the student's 2 x 2 x 2
    with pytest.raises(ConfigError, match=r"objective 'mfd': the teacher's token grid \(T', H', W'\) = \(2, 4, 4\) "
                                          r"differs from the student's \(2, 2, 2\); set 'objective.grid_match: pool'"):
        config_from_dict(mfd_config(tmp_path, tmp_path, fine))  # when the config is read
    with pytest.raises(ConfigError, match=r"the teacher's token grid \(T', H', W'\) = \(2, 4, 4\)"):
        fine.rename(tmp_path / "later.pt")  # a teacher that appears after the config was read: when it is built
        cfg = config_from_dict(mfd_config(tmp_path, tmp_path, fine))
        (tmp_path / "later.pt").rename(fine)
        build_objective(cfg)
    mfd = build_mfd(tmp_path, fine, grid_match="pool")
    targets, _ = mfd.targets(CLIP)
    with torch.no_grad():
        tokens = mfd.teacher(CLIP).view(2, 2, 2, 2, 2, 2, 32)  # (B, T, H/2, 2, W/2, 2, D)
    pooled = tokens.mean(dim=(3, 5)).reshape(2, 8, 32)
    torch.testing.assert_close(targets, F.layer_norm(pooled, (32,)))
    assert torch.isfinite(mfd(BATCH)[0])
    coarse = save_teacher(tmp_path / "tubelet4.pt", tubelet_size=4)  # 1 x 2 x 2: no whole multiple
    with pytest.raises(ConfigError, match=r"the teacher's grid \(1, 2, 2\) is not a whole multiple of the "
                                          r"student's \(2, 2, 2\)"):
        build_mfd(tmp_path, coarse, grid_match="pool")


def test_an_exported_encoder_teaches_as_its_checkpoint_does(tmp_path, teacher):
    from vjm.eval.frozen import load_frozen_encoder
    from vjm.models import save_exported

    encoder, info = load_frozen_encoder(teacher)
    model = config_from_dict(tiny_config(tmp_path, tmp_path)).model
    exported = save_exported(encoder, model, tmp_path / "teacher.safetensors")
    from_checkpoint, from_export = build_mfd(tmp_path, teacher), build_mfd(tmp_path, exported)
    assert torch.equal(from_export.teacher_record.fingerprint, from_checkpoint.teacher_record.fingerprint)
    torch.testing.assert_close(from_export(BATCH)[0], from_checkpoint(BATCH)[0])
    fine, _ = load_frozen_encoder(save_teacher(tmp_path / "patch8.pt", patch_size=8))
    model = config_from_dict(tiny_config(tmp_path, tmp_path, model={"patch_size": 8})).model
    fine_export = save_exported(fine, model, tmp_path / "patch8.safetensors")
    with pytest.raises(ConfigError, match=r"the teacher's token grid \(T', H', W'\) = \(2, 4, 4\) differs"):
        config_from_dict(mfd_config(tmp_path, tmp_path, fine_export))  # read from the file's metadata


def test_config_errors_name_the_missing_teacher(tmp_path):
    with pytest.raises(ConfigError, match="'objective.teacher.checkpoint' is not set"):
        config_from_dict({"objective": {"name": "mfd"}})
    with pytest.raises(FileNotFoundError, match="no such file. MFD distils a trained vjm encoder: train one first"):
        build_mfd(tmp_path, tmp_path / "missing.pt")


# ------------------------------------------------------------------------------------ through the engine


@pytest.fixture(scope="module")
def trained(tmp_path_factory, toy_root, teacher):
    """configs/mfd_tiny.yaml shrunk to seconds: 12 steps of a 32-wide, 2-block VideoMamba student."""
    run_dir = tmp_path_factory.mktemp("mfd_run")
    cfg = load_config(ROOT / "configs" / "mfd_tiny.yaml", shrunk_toy_overrides(run_dir, toy_root) + [
        "model.depth=2", f"objective.teacher.checkpoint={teacher}", "masks.0.ratio=0.5",
        "objective.decoder={width: 32, depth: 1, num_heads: 4}", "optim.warmup_steps=2", "train.steps_per_epoch=6",
        "train.checkpoint_every=6", "train.log_every=1", "train.tensorboard=false",
    ])
    Trainer(cfg, DistInfo()).fit()
    return cfg


def test_the_toy_config_trains_the_loss_falls_and_checkpoints_hold_no_teacher(trained):
    losses = read_losses(trained.run_dir)
    assert sorted(losses) == list(range(1, 13))
    assert sum(losses[s] for s in (10, 11, 12)) < 0.9 * sum(losses[s] for s in (1, 2, 3))
    state = load_checkpoint(trained.run_dir / "latest.pt")
    assert state["objective"] == "mfd" and set(state["models"]) == {"encoder", "decoder", "teacher_record"}
    assert list(state["models"]["teacher_record"]) == ["fingerprint"]


def test_resuming_with_another_teacher_is_refused(trained, tmp_path):
    teacher_path = Path(trained.objective.teacher.checkpoint)
    original = teacher_path.read_bytes()
    try:
        save_teacher(teacher_path, seed=1)
        longer = load_config(trained.run_dir / "config.yaml", ["train.epochs=3"])
        with pytest.raises(ConfigError, match=r"the teacher changed: this run was trained with a teacher whose weights "
                                              r"have fingerprint \w{16}, but 'objective.teacher.checkpoint' .* now "
                                              r"holds weights of fingerprint \w{16}\. Put back the teacher file"):
            Trainer(longer, DistInfo()).resume()
    finally:
        teacher_path.write_bytes(original)
    assert Trainer(longer, DistInfo()).resume()  # the original teacher resumes


@pytest.mark.gpu
def test_on_the_gpu_the_teacher_runs_in_bf16_and_the_student_as_the_step_says(tmp_path, teacher):
    mfd = build_mfd(tmp_path, teacher, attentive=True).cuda().train()
    seen = {}
    for name in ("teacher", "encoder"):
        getattr(mfd, name).patch_embed.register_forward_hook(
            lambda module, args, out, name=name: seen.update({name: out[0].dtype}))
    batch = {"clip": CLIP.cuda(), "masks": [(VISIBLE.cuda(), MASKED.cuda())]}
    loss, metrics = mfd(batch)  # an fp32 step: the teacher alone in bf16
    loss.backward()
    assert seen == {"teacher": torch.bfloat16, "encoder": torch.float32}
    assert torch.isfinite(loss) and metrics["saliency_kept"] > 0
    assert all(p.grad is None for p in mfd.teacher.parameters())
