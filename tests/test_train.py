import csv
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from data_helpers import write_malicious_pickle

from vjm.config import config_from_dict, load_config
from vjm.models import Predictor, sincos_3d
from vjm.objectives import build_objective
from vjm.objectives.vjepa import VJEPA, variance_term
from vjm.train.checkpoint import save_checkpoint
from vjm.train.distributed import DistInfo
from vjm.train.engine import NonFiniteLossError, Trainer
from vjm.train.optim import Schedules, build_optimizer, decays
from vjm.train.run_folder import ConfigChangeError

ROOT = Path(__file__).resolve().parents[1]


def tiny_config(tmp_path: Path, toy_root: Path, **sections) -> dict:
    """A config small enough that a step takes a fraction of a second on the CPU."""
    raw = {
        "run": {"name": "tiny", "folder": str(tmp_path / "run"), "seed": 3},
        "data": {"dataset": "toy", "toy_root": str(toy_root), "toy_num_train": 48, "toy_num_val": 8,
                 "toy_frames": 8, "toy_size": 32, "frames_per_clip": 4, "frame_step": 2, "crop_size": 32,
                 "batch_size": 4, "num_workers": 0, "pin_memory": False},
        "model": {"name": "videomamba_tiny", "embed_dim": 32, "depth": 2},
        "masks": [{"kind": "multiblock", "num_blocks": 2, "spatial_scale": [0.3, 0.3]},
                  {"kind": "tube", "ratio": 0.5}],
        "objective": {"name": "vjepa", "predictor": {"width": 16, "depth": 1}},
        "optim": {"lr": 1e-3, "start_lr": 1e-4, "warmup_steps": 2},
        "train": {"epochs": 2, "steps_per_epoch": 5, "checkpoint_every": 3, "log_every": 1},
    }
    for section, values in sections.items():
        raw.setdefault(section, {}).update(values)
    return raw


def write_config(raw: dict, path: Path) -> Path:
    path.write_text(yaml.safe_dump(raw))
    return path


def save_initial_checkpoint(cfg, path: Path, seed: int = 0) -> Path:
    """A checkpoint of ``cfg``'s objective at step 0 with weights drawn from ``seed`` (no data read)."""
    torch.manual_seed(seed)
    models = {name: module.state_dict() for name, module in build_objective(cfg).checkpoint_modules().items()}
    return save_checkpoint({"config": cfg.to_dict(), "objective": cfg.objective.name, "step": 0, "models": models},
                           path)


def read_losses(run_dir: Path) -> dict[int, float]:
    with (run_dir / "log.csv").open() as f:
        return {int(row["step"]): float(row["loss"]) for row in csv.DictReader(f)}


# ----------------------------------------------------------------------------- pieces


def test_schedules_warm_up_then_decay():
    cfg = config_from_dict({"optim": {"lr": 1.0, "start_lr": 0.1, "final_lr": 0.01, "warmup_steps": 10,
                                      "weight_decay": 0.04, "final_weight_decay": 0.4}}).optim
    sched = Schedules(cfg, total_steps=110)
    assert sched.lr(0) == pytest.approx(0.1)
    assert sched.lr(5) == pytest.approx(0.55)
    assert sched.lr(10) == pytest.approx(1.0)
    assert sched.lr(60) == pytest.approx(0.505)  # half-way down the cosine
    assert sched.lr(110) == pytest.approx(0.01)
    assert sched.weight_decay(0) == pytest.approx(0.04) and sched.weight_decay(110) == pytest.approx(0.4)
    assert sched.weight_decay(55) == pytest.approx(0.22)


def test_no_weight_decay_on_biases_norms_ssm_parameters_and_tokens(tmp_path):
    objective = build_objective(config_from_dict(tiny_config(tmp_path, tmp_path)))
    names = {n: decays(n, p) for n, p in objective.named_parameters() if p.requires_grad}
    assert names["predictor.mask_tokens"] is False
    assert names["encoder.stack.blocks.0.mixer.directions.0.A_log"] is False
    assert names["encoder.stack.blocks.0.mixer.directions.0.D"] is False
    assert names["encoder.stack.blocks.0.norm.weight"] is False
    assert names["encoder.stack.blocks.0.mixer.directions.0.dt_proj.bias"] is False
    assert names["encoder.stack.blocks.0.mixer.in_proj.weight"] is True
    assert names["encoder.patch_embed.proj.weight"] is True
    assert not any(n.startswith("target_encoder") for n in names)  # the EMA copy is not optimised
    optimizer = build_optimizer(objective, config_from_dict({}).optim)
    decay, no_decay = optimizer.param_groups
    assert decay["decay"] and not no_decay["decay"] and no_decay["weight_decay"] == 0.0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_optimizer_is_fused_and_steps_like_the_multi_tensor_one():
    cfg = config_from_dict({}).optim
    torch.manual_seed(0)
    models = [torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.LayerNorm(8)).cuda() for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    fused = build_optimizer(models[0], cfg)
    for group in fused.param_groups:  # no decay anywhere: the two differ only in the kernel
        group["weight_decay"] = 0.0
    reference = torch.optim.AdamW(models[1].parameters(), lr=cfg.start_lr, betas=tuple(cfg.betas), eps=cfg.eps,
                                  weight_decay=0.0, foreach=True)
    assert fused.defaults["fused"] and not reference.defaults["fused"]
    x = torch.randn(4, 8, device="cuda")
    for model, optimizer in zip(models, (fused, reference)):
        for _ in range(3):
            model(x).square().mean().backward()
            optimizer.step()
            optimizer.zero_grad()
    for a, b in zip(models[0].parameters(), models[1].parameters()):
        torch.testing.assert_close(a, b)
    assert not build_optimizer(torch.nn.Linear(2, 2), cfg).defaults["fused"]  # CPU parameters


def test_ema_moves_the_target_towards_the_encoder():
    encoder = torch.nn.Linear(3, 3)
    objective = VJEPA(encoder, torch.nn.Identity(), ema_momentum=(0.9, 1.0))
    with torch.no_grad():
        encoder.weight.add_(1.0)
    before = objective.target_encoder.weight.clone()
    metrics = objective.after_optimizer_step(progress=0.0)
    assert metrics["ema"] == pytest.approx(0.9)
    torch.testing.assert_close(objective.target_encoder.weight, 0.9 * before + 0.1 * encoder.weight)
    assert objective.after_optimizer_step(progress=1.0)["ema"] == 1.0
    assert not any(p.requires_grad for p in objective.target_encoder.parameters())


def test_predictor_merges_context_and_targets_in_raster_order():
    grid = (1, 2, 3)
    predictor = Predictor(embed_dim=8, width=6, depth=1, kind="attention", num_heads=2, num_mask_tokens=2)
    seen = []
    predictor.body = type("Recorder", (torch.nn.Module,), {"forward": lambda self, x: seen.append(x) or x})()
    with torch.no_grad():
        predictor.embed.weight.zero_(), predictor.embed.bias.zero_(), predictor.mask_tokens.zero_()
    context_idx, target_idx = torch.tensor([[1, 4]]), torch.tensor([[5, 0, 2]])
    predictor(torch.randn(1, 2, 8), context_idx, target_idx, grid, mask_index=1)
    pos = sincos_3d(6, grid)
    # Tokens 0, 1, 2, 4, 5 in that order (3 is neither context nor target and is left out).
    torch.testing.assert_close(seen[0][0], pos[[0, 1, 2, 4, 5]])


def test_predictor_outputs_follow_target_order():
    torch.manual_seed(0)
    predictor = Predictor(embed_dim=8, width=8, depth=1, kind="mamba", num_mask_tokens=1).eval()
    context, context_idx = torch.randn(1, 2, 8), torch.tensor([[1, 4]])
    with torch.no_grad():
        a = predictor(context, context_idx, torch.tensor([[0, 2, 5]]), (1, 2, 3))
        b = predictor(context, context_idx, torch.tensor([[5, 0, 2]]), (1, 2, 3))
    torch.testing.assert_close(b, a[:, [2, 0, 1]])
    with pytest.raises(IndexError, match="mask_index 1"):
        predictor(context, context_idx, torch.tensor([[0]]), (1, 2, 3), mask_index=1)


def test_vjepa_loss_is_l1_to_layernormed_targets_averaged_over_masks():
    torch.manual_seed(0)
    from vjm.models import build

    encoder = build("vit_tiny", embed_dim=8, depth=1, num_heads=2)
    predictor = Predictor(8, width=8, depth=1, kind="attention", num_heads=2, num_mask_tokens=2)
    objective = VJEPA(encoder, predictor, var_weight=0.5)
    clip = torch.randn(2, 3, 2, 32, 32)
    masks = [(torch.tensor([[0, 1], [0, 2]]), torch.tensor([[2, 3], [1, 3]])),
             (torch.tensor([[3], [1]]), torch.tensor([[0, 1], [0, 2]]))]
    loss, metrics = objective({"clip": clip, "masks": masks})
    with torch.no_grad():
        full = torch.nn.functional.layer_norm(objective.target_encoder(clip), (8,))
    expected_l1, expected_var = [], []
    for i, (ctx, tgt) in enumerate(masks):
        pred = predictor(encoder(clip, keep=ctx), ctx, tgt, (1, 2, 2), i)
        target = torch.stack([full[b, tgt[b]] for b in range(2)])
        expected_l1.append((pred - target).abs().mean())
        expected_var.append(torch.sqrt(pred.var(dim=-1) + 1e-4).mean())
    expected = torch.stack(expected_l1).mean() + 0.5 * torch.stack(expected_var).mean()
    torch.testing.assert_close(loss, expected)
    assert set(metrics) == {"loss", "l1", "var", "l1_mask0", "l1_mask1", "target_rank"}


def test_variance_forms():
    z = torch.tensor([[[1.0, 3.0], [2.0, 2.0]]])  # one sample, two tokens, two features
    assert variance_term(z, "sqrt").item() == pytest.approx((math.sqrt(2 + 1e-4) + math.sqrt(1e-4)) / 2)
    # hinge: per-feature std over tokens: features (1, 2) and (3, 2) both have var 0.5.
    assert variance_term(z, "hinge").item() == pytest.approx(1 - math.sqrt(0.5 + 1e-4))


# ----------------------------------------------------------------------------- the loop


def test_training_writes_checkpoint_csv_and_tensorboard(tmp_path, toy_root):
    cfg = config_from_dict(tiny_config(tmp_path, toy_root))
    result = Trainer(cfg, DistInfo()).fit()
    run = cfg.run_dir
    assert (run / "latest.pt").is_file() and (run / "config.yaml").is_file()
    assert load_config(run / "config.yaml") == cfg
    assert sorted(read_losses(run)) == list(range(1, 11))
    assert list((run / "tb").glob("events.out.tfevents.*"))
    assert math.isfinite(result["loss"]) and result["skipped_files"] == 0
    state = torch.load(run / "latest.pt", weights_only=True)
    assert state["step"] == 10 and set(state["models"]) == {"encoder", "target_encoder", "predictor"}


def test_nonfinite_losses_skip_steps_then_stop_the_run(tmp_path, toy_root, monkeypatch):
    cfg = config_from_dict(tiny_config(tmp_path, toy_root, train={"max_nonfinite": 3}))
    trainer = Trainer(cfg, DistInfo())
    real_forward = trainer.objective.forward
    calls = {"n": 0}

    def flaky(batch):
        calls["n"] += 1
        loss, metrics = real_forward(batch)
        return (loss * float("nan") if calls["n"] in (2, 5, 6, 7) else loss), metrics

    monkeypatch.setattr(trainer.objective, "forward", flaky)
    with pytest.raises(NonFiniteLossError, match=r"3 non-finite losses in a row at step 3.*Last good checkpoint: .*step 3"):
        trainer.fit()
    assert trainer.step == 3  # call 2 was skipped; calls 3, 4 made steps 2 and 3


def test_a_skipped_step_that_exhausts_the_epoch_does_not_end_the_run(tmp_path, toy_root, monkeypatch):
    cfg = config_from_dict(tiny_config(tmp_path, toy_root, train={"epochs": 1, "steps_per_epoch": 12}))
    trainer = Trainer(cfg, DistInfo())
    assert trainer.loader.sampler.num_batches() == 12  # every batch of the epoch is needed
    real_forward = trainer.objective.forward
    calls = {"n": 0}

    def one_nan(batch):
        calls["n"] += 1
        loss, metrics = real_forward(batch)
        return (loss * float("nan") if calls["n"] == 4 else loss), metrics

    monkeypatch.setattr(trainer.objective, "forward", one_nan)
    trainer.fit()
    assert trainer.step == 12 and calls["n"] == 13


def test_resuming_a_checkpoint_of_another_size_says_which_sizes_differ_in_one_line(tmp_path, toy_root):
    Trainer(config_from_dict(tiny_config(tmp_path, toy_root)), DistInfo()).save()
    latest = tmp_path / "run" / "latest.pt"
    wider = config_from_dict(tiny_config(tmp_path, toy_root, model={"embed_dim": 48}))
    with pytest.raises(ConfigChangeError, match=r"^\S+ was trained with another config: model.embed_dim 32 -> 48\. "):
        Trainer(wider, DistInfo()).resume()  # the config is compared first
    with pytest.raises(ValueError) as e:
        Trainer(wider, DistInfo(), allow_config_change=True).resume()
    message = str(e.value)
    assert "\n" not in message and message.startswith(
        f"{latest} ('encoder') was trained with model.embed_dim=32; this config has model.embed_dim=48: its weights "
        "do not fit: ")
    assert message.endswith("Start a new run folder (run.folder), or set the model section as the checkpoint's")
    # The model sections agree but the predictor is another: the tensors that differ are summarised.
    other_predictor = tiny_config(tmp_path, toy_root,
                                  objective={"name": "vjepa", "predictor": {"width": 24, "depth": 1}})
    with pytest.raises(ValueError) as e:
        Trainer(config_from_dict(other_predictor), DistInfo(), allow_config_change=True).resume()
    assert "\n" not in str(e.value) and str(e.value).startswith(f"{latest} ('predictor'): its weights do not fit: ")
    assert "tensors differ in shape (e.g. " in str(e.value)


def run_launcher(config: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "launch.local", "--fname", str(config), *extra],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


RESUMABLE_OBJECTIVES = ("vjepa", "mae", "arm", "supervised", "mfd")  # the objectives resumable_config knows


def resumable_config(tmp_path: Path, toy_root: Path, objective: str) -> dict:
    """tiny_config for ``objective``; MAE's and ARM's also draw their TensorBoard pictures, which must
    not change what is trained; the supervised one fine-tunes with mixup, cutmix, EMA and layer decay;
    MFD's student draws attentive masks and is shuffled by SLWS, both from the checkpointed streams."""
    raw = tiny_config(tmp_path, toy_root, data={"num_workers": 1})
    if objective == "mae":
        raw["masks"] = [{"kind": "tube", "ratio": 0.5}]
        raw["objective"] = {"name": "mae", "decoder": {"width": 16, "depth": 1, "num_heads": 2}}
        raw["train"]["image_every"] = 2
    if objective == "arm":
        raw["model"] = {"name": "mambamlp_tiny", "embed_dim": 32, "depth": 2}
        raw["objective"] = {"name": "arm", "cluster_size": 2, "decoder": {"width": 16, "depth": 1, "num_heads": 2}}
        del raw["masks"]
        raw["train"]["image_every"] = 2
    if objective == "mfd":  # a V-JEPA teacher; the student draws attentive masks and shuffles (SLWS)
        teacher = save_initial_checkpoint(config_from_dict(raw), tmp_path / "teacher.pt")
        raw["masks"] = [{"kind": "random", "ratio": 0.5}]
        raw["objective"] = {"name": "mfd", "teacher": {"checkpoint": str(teacher)}, "attentive": True,
                            "decoder": {"width": 16, "depth": 1, "num_heads": 2}}
        raw["regularizers"] = [{"kind": "slws", "rate": 1.0}]
    if objective == "supervised":  # fine-tuning's recipe: mixing (numpy's stream), a weight EMA, layer decay
        del raw["masks"]
        raw["objective"] = {"name": "supervised", "num_classes": 8, "head": "mean", "mixup": 0.8, "cutmix": 1.0,
                            "label_smoothing": 0.1, "ema": 0.9}
        raw["optim"]["layer_decay"] = 0.7
        raw["model"]["drop_path"] = 0.1
    return raw


@pytest.mark.slow
@pytest.mark.parametrize("objective", RESUMABLE_OBJECTIVES)
def test_sigkill_then_restart_resumes_exactly(tmp_path, toy_root, objective):
    """Killed with SIGKILL and started again with the same command, the run continues from its
    last checkpoint and the following losses equal those of an uninterrupted run."""
    # The uninterrupted run goes through the same launcher: a process of its own, with the same
    # thread count, since CPU kernels may round differently when split over other thread counts.
    reference = resumable_config(tmp_path / "a", toy_root, objective)
    run_launcher(write_config(reference, tmp_path / "a.yaml"), "--devices", "cpu").communicate(timeout=300)
    expected = read_losses(Path(reference["run"]["folder"]))

    raw = resumable_config(tmp_path / "b", toy_root, objective)
    config = write_config(raw, tmp_path / "b.yaml")
    run_dir = Path(raw["run"]["folder"])
    proc = run_launcher(config, "--devices", "cpu")
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:  # kill right after the step-3 checkpoint
        if (run_dir / "latest.pt").exists() and (run_dir / "log.csv").exists() and max(read_losses(run_dir)) >= 4:
            break
        time.sleep(0.05)
    assert proc.poll() is None, f"the run ended before it could be killed:\n{proc.stdout.read()}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = torch.load(run_dir / "latest.pt", weights_only=True)["step"]
    assert 3 <= killed_at < 10  # a checkpoint of the interrupted run, not of a finished one

    out, _ = run_launcher(config, "--devices", "cpu").communicate(timeout=300)
    assert "resumed from" in out, out
    resumed = read_losses(run_dir)
    assert sorted(resumed) == list(range(1, 11))
    assert resumed == expected  # bit-identical losses, before and after the kill
    # and the same final weights, the ones no loss shows (an EMA) included
    final, reference_final = (torch.load(Path(folder) / "latest.pt", weights_only=True)["models"]
                              for folder in (run_dir, reference["run"]["folder"]))
    assert all(torch.equal(final[child][key], value) for child, weights in reference_final.items()
               for key, value in weights.items())


@pytest.mark.slow
def test_two_process_gloo_ddp(tmp_path, toy_root):
    raw = tiny_config(tmp_path, toy_root, train={"epochs": 1, "steps_per_epoch": 3})
    config = write_config(raw, tmp_path / "ddp.yaml")
    out, _ = run_launcher(config, "--devices", "cpu", "cpu").communicate(timeout=300)
    run_dir = Path(raw["run"]["folder"])
    assert (run_dir / "latest.pt").is_file(), out
    state = torch.load(run_dir / "latest.pt", weights_only=True)
    assert state["data"]["world_size"] == 2 and len(state["ranks"]) == 2 and state["step"] == 3
    # One stream for all ranks: their draws are made for the global batch (vjm.global_batch).
    assert torch.equal(state["ranks"][0]["rng"]["torch"], state["ranks"][1]["rng"]["torch"])
    assert "on 2 process(es)" in out
    assert sorted(read_losses(run_dir)) == [1, 2, 3]


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_pretraining_configs_load_and_build(path):
    cfg = load_config(path, check_data=False)  # their lists are on the cluster
    from vjm.masks import build_mask_generators, token_grid

    grid = token_grid(cfg.data.frames_per_clip, cfg.data.crop_size, cfg.model.patch_size, cfg.model.tubelet_size)
    assert len(build_mask_generators(cfg.masks, grid)) == len(cfg.masks)


@pytest.mark.gpu
def test_rng_state_restores_from_a_checkpoint_loaded_onto_the_gpu():
    from vjm.train.engine import rng_state, set_rng_state

    saved = rng_state()
    expected = (torch.rand(3), torch.rand(3, device="cuda"))
    # load_checkpoint(map_location=cuda) moves every tensor of the state onto the GPU.
    on_gpu = {**saved, "torch": saved["torch"].cuda(), "cuda": [s.cuda() for s in saved["cuda"]],
              "numpy": [saved["numpy"][0], saved["numpy"][1].cuda(), *saved["numpy"][2:]]}
    set_rng_state(on_gpu)
    assert torch.equal(torch.rand(3), expected[0])
    assert torch.equal(torch.rand(3, device="cuda"), expected[1])


def test_vjepa_context_loss_compares_the_predictor_at_visible_tokens_with_their_targets():
    torch.manual_seed(0)
    from vjm.models import build

    encoder = build("vit_tiny", embed_dim=8, depth=1, num_heads=2)
    predictor = Predictor(8, width=8, depth=1, kind="attention", num_heads=2, num_mask_tokens=1)
    objective = VJEPA(encoder, predictor, context_weight=0.5)
    clip = torch.randn(2, 3, 2, 32, 32)
    ctx, tgt = torch.tensor([[0, 1], [0, 2]]), torch.tensor([[2, 3], [1, 3]])
    loss, metrics = objective({"clip": clip, "masks": [(ctx, tgt)]})
    with torch.no_grad():
        full = torch.nn.functional.layer_norm(objective.target_encoder(clip), (8,))
    pred, pred_context = predictor(encoder(clip, keep=ctx), ctx, tgt, (1, 2, 2), with_context=True)
    torch.testing.assert_close(pred, predictor(encoder(clip, keep=ctx), ctx, tgt, (1, 2, 2)))
    on_targets = (pred - torch.stack([full[b, tgt[b]] for b in range(2)])).abs().mean()
    on_context = (pred_context - torch.stack([full[b, ctx[b]] for b in range(2)])).abs().mean()
    torch.testing.assert_close(metrics["l1_context"], on_context.detach())
    torch.testing.assert_close(loss, on_targets + 0.5 * on_context)


@pytest.mark.parametrize("fmt", ["torch", "pickle"])
def test_a_malicious_latest_checkpoint_runs_no_code_on_resume(tmp_path, toy_root, fmt):
    marker = tmp_path / "pwned"
    cfg = config_from_dict(tiny_config(tmp_path, toy_root))
    trainer = Trainer(cfg, DistInfo())
    write_malicious_pickle(cfg.run_dir / "latest.pt", marker, fmt)
    with pytest.raises(ValueError, match=f"checkpoint {cfg.run_dir / 'latest.pt'} could not be read safely"):
        trainer.fit()
    assert not marker.exists()


def test_every_file_the_code_unpickles_is_read_with_weights_only():
    """A new entry point that calls torch.load without weights_only=True (or pickle, or np.load with
    allow_pickle) could run code from a downloaded file: none may exist outside the tests."""
    import ast

    unsafe = []
    for path in sorted(p for folder in ("vjm", "evals", "launch", "bench") for p in (ROOT / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call):
                continue
            called = ast.unparse(node.func)
            keywords = {k.arg: ast.unparse(k.value) for k in node.keywords}
            if (called == "torch.load" and keywords.get("weights_only") != "True"
                    or called in ("pickle.load", "pickle.loads", "torch.jit.load")
                    or called.endswith("np.load") and keywords.get("allow_pickle") not in (None, "False")):
                unsafe.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    assert not unsafe, "\n".join(unsafe)


def test_skipped_files_counts_distinct_files_names_each_once_and_reaches_log_csv(tmp_path, toy_root, caplog):
    """Three bad files, each listed three times and met in both epochs: 3 in log.csv, each named once."""
    from vjm.data.sources import read_file_list
    from vjm.data.toy import ensure_toy_dataset

    raw = tiny_config(tmp_path, toy_root, train={"epochs": 2, "steps_per_epoch": 5, "checkpoint_every": 5,
                                                 "log_every": 2})
    toy = raw["data"]
    lists = ensure_toy_dataset(toy_root, num_train=toy["toy_num_train"], num_val=toy["toy_num_val"],
                               frames=toy["toy_frames"], size=toy["toy_size"], seed=raw["run"]["seed"])
    good = [f"{sample.path} {sample.label}" for sample in read_file_list(lists["train"]["direction"])[:11]]
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "garbage.mp4").write_bytes(os.urandom(2048))
    bad = [tmp_path / "missing.mp4", tmp_path / "empty.mp4", tmp_path / "garbage.mp4"]
    listing = tmp_path / "train.csv"  # 20 rows: 5 batches of 4, every row visited in each epoch
    listing.write_text("\n".join(good + [f"{path} 0" for path in bad * 3]) + "\n")
    raw["data"].update(dataset="video", train=[str(listing)])
    cfg = config_from_dict(raw)
    with caplog.at_level("WARNING"):
        Trainer(cfg, DistInfo()).fit()
    with (cfg.run_dir / "log.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(row["step"]) for row in rows] == [2, 4, 6, 8, 10]
    assert int(float(rows[-1]["skipped_files"])) == 3
    named = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Skipped unreadable file")]
    assert sorted(message.split()[3] for message in named) == sorted(str(path) for path in bad)
    # A resumed run keeps the files it already met: they are neither counted nor named again.
    caplog.clear()
    longer = config_from_dict({**raw, "train": {**raw["train"], "epochs": 3}})
    with caplog.at_level("WARNING"):
        Trainer(longer, DistInfo()).fit()
    with (cfg.run_dir / "log.csv").open() as f:
        assert int(float(list(csv.DictReader(f))[-1]["skipped_files"])) == 3
    assert not [r for r in caplog.records if r.getMessage().startswith("Skipped unreadable file")]
