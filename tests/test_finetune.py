"""Fine-tuning (python -m evals.finetune): layer-wise lr decay, clip mixing, multi-view evaluation,
encoder initialisation and its errors, and whole runs from a checkpoint and from scratch."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from vjm.config import ConfigError, OptimConfig, config_from_dict
from vjm.data.datasets import collate_items
from vjm.data.mixup import ClipMixup
from vjm.eval.classify import evaluate_classifier
from vjm.eval.frozen import load_encoder_weights
from vjm.models import build_encoder
from vjm.objectives import build_objective
from vjm.train.distributed import DistInfo
from vjm.train.engine import Trainer
from vjm.train.optim import Schedules, build_optimizer, decay_groups, split_at_encoder

from test_train import tiny_config, write_config


def finetune_config(tmp_path: Path, toy_root: Path, objective: dict | None = None, **sections) -> dict:
    """tiny_config with the supervised objective and every fine-tuning knob on."""
    raw = tiny_config(tmp_path, toy_root, data={"toy_task": "direction", "hflip": False},
                      optim={"layer_decay": 0.5}, model={"drop_path": 0.1},
                      train={"epochs": 1, "steps_per_epoch": 3, "checkpoint_every": 2})
    for section, values in sections.items():
        raw[section].update(values)
    del raw["masks"]
    raw["objective"] = {"name": "supervised", "num_classes": 8, "head": "mean", "label_smoothing": 0.1,
                        "mixup": 0.8, "cutmix": 1.0, "ema": 0.9,
                        "evaluation": {"num_segments": 2, "num_views": 3, "batch_size": 4}, **(objective or {})}
    return raw


@pytest.fixture(scope="module")
def vjepa_checkpoint(tmp_path_factory, toy_root):
    """A V-JEPA checkpoint of the tiny model (written at step 0: its weights are what matters here)."""
    folder = tmp_path_factory.mktemp("pretrained")
    cfg = config_from_dict(tiny_config(folder, toy_root))
    Trainer(cfg, DistInfo()).save()
    return cfg.run_dir / "latest.pt"


# ----------------------------------------------------------------------------- layer-wise lr decay


def three_block_optimizer(tmp_path, **optim):
    """A 3-block fine-tuning objective, its optimiser at step 0, that step's lr, and each parameter's group."""
    raw = finetune_config(tmp_path, tmp_path, optim={"lr": 1e-3, "warmup_steps": 0, **optim})
    raw["model"]["depth"] = 3
    cfg = config_from_dict(raw)
    objective = build_objective(cfg)
    optimizer = build_optimizer(objective, cfg.optim)
    lr, _ = Schedules(cfg.optim, 10).apply(optimizer, 0)
    group_of = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    return objective, optimizer, lr, group_of


def test_layer_decay_scales_each_block_and_spares_norms_biases_and_ssm_parameters(tmp_path):
    objective, optimizer, lr, group_of = three_block_optimizer(tmp_path, layer_decay=0.5)
    named = dict(objective.named_parameters())
    assert not any(name.startswith("ema.") and id(p) in group_of for name, p in named.items())  # not optimised

    def group(name):
        return group_of[id(named[name])]

    # Depth 3: embedding at 0.5^4, block i at 0.5^(3 - i), the final norm and head at 1.
    assert group("encoder.patch_embed.proj.weight")["lr"] == pytest.approx(lr * 0.5**4)
    for block in range(3):
        for param in ("mixer.in_proj.weight", "mixer.directions.1.A_log", "norm.weight"):
            assert group(f"encoder.stack.blocks.{block}.{param}")["lr"] == pytest.approx(lr * 0.5 ** (3 - block))
    for name in ("encoder.stack.norm.weight", "head.fc.weight", "head.fc.bias", "head.norm.weight"):
        assert group(name)["lr"] == pytest.approx(lr)
    decayed = {name for name, p in named.items() if p.requires_grad and group(name)["weight_decay"] > 0}
    assert "encoder.stack.blocks.2.mixer.in_proj.weight" in decayed and "head.fc.weight" in decayed
    for name in ("encoder.stack.blocks.0.mixer.directions.0.A_log", "encoder.stack.blocks.0.mixer.directions.0.D",
                 "encoder.stack.blocks.1.norm.weight", "encoder.stack.blocks.0.mixer.directions.0.dt_proj.bias",
                 "encoder.stack.norm.weight", "head.fc.bias", "head.norm.weight", "encoder.patch_embed.proj.bias"):
        assert name not in decayed, name
    # Every trainable parameter is in exactly one group; layer_decay 1 keeps the two plain groups.
    assert sum(len(g["params"]) for g in optimizer.param_groups) == sum(p.requires_grad for p in named.values())
    plain = config_from_dict(finetune_config(tmp_path, tmp_path, optim={"layer_decay": 1.0}))
    assert len(build_optimizer(objective, plain.optim).param_groups) == 2


def test_head_lr_scale_speeds_up_the_head_only_and_composes_with_layer_decay(tmp_path):
    objective, optimizer, lr, group_of = three_block_optimizer(tmp_path, layer_decay=0.5, head_lr_scale=10.0)
    named = {name: p for name, p in objective.named_parameters() if p.requires_grad}
    assert set(group_of) == {id(p) for p in named.values()}  # every parameter, once
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(named)
    assert group_of[id(named["head.fc.weight"])]["lr"] == pytest.approx(10 * lr)
    assert group_of[id(named["head.fc.bias"])]["weight_decay"] == 0  # its decay kept
    # The encoder is untouched: its final norm at lr, block 0 at 0.5^3, the embedding at 0.5^4.
    assert group_of[id(named["encoder.stack.norm.weight"])]["lr"] == pytest.approx(lr)
    assert group_of[id(named["encoder.stack.blocks.0.mixer.in_proj.weight"])]["lr"] == pytest.approx(lr * 0.5**3)
    assert group_of[id(named["encoder.patch_embed.proj.weight"])]["lr"] == pytest.approx(lr * 0.5**4)


def test_head_lr_scale_refuses_an_objective_whose_evaluated_encoder_is_not_trained():
    model = torch.nn.ModuleDict({"encoder": torch.nn.Linear(2, 2), "head": torch.nn.Linear(2, 2)})
    model["encoder"].requires_grad_(False)  # like V-JEPA's EMA target
    with pytest.raises(ValueError, match="head_lr_scale.*not trained"):
        split_at_encoder(decay_groups(model), model, "encoder", 10.0, "head_lr_scale")
    # Through the optimiser, the error names every option that asked for the split.
    cfg = OptimConfig(head_lr_scale=10.0, encoder_frozen_steps=5)
    with pytest.raises(ValueError, match=r"optim\.head_lr_scale and optim\.encoder_frozen_steps: .* not trained"):
        build_optimizer(model, cfg)


def test_a_frozen_encoder_has_no_rate_then_warms_up_while_the_head_follows_the_schedule(tmp_path):
    objective, optimizer, _, group_of = three_block_optimizer(tmp_path, layer_decay=0.5, head_lr_scale=10.0,
                                                              encoder_frozen_steps=2, warmup_steps=2)
    named = {name: p for name, p in objective.named_parameters() if p.requires_grad}
    schedules = Schedules(config_from_dict(finetune_config(tmp_path, tmp_path, optim={
        "lr": 1e-3, "warmup_steps": 2, "encoder_frozen_steps": 2})).optim, 10)

    def rates(step):
        lr, _ = schedules.apply(optimizer, step)
        return (lr, group_of[id(named["head.fc.weight"])]["lr"], group_of[id(named["encoder.stack.norm.weight"])]["lr"],
                group_of[id(named["encoder.stack.blocks.0.mixer.in_proj.weight"])]["lr"])

    for step in range(2):
        lr, head, norm, block0 = rates(step)
        assert head == pytest.approx(10 * lr) and head > 0 and norm == 0 and block0 == 0, step
    lr, head, norm, block0 = rates(2)  # the encoder's own warmup: half its rate, then all of it
    assert norm == pytest.approx(lr / 2) and block0 == pytest.approx(lr / 2 * 0.5**3) and head == pytest.approx(10 * lr)
    lr, head, norm, block0 = rates(3)
    assert norm == pytest.approx(lr) and block0 == pytest.approx(lr * 0.5**3)


def test_a_frozen_encoder_keeps_its_weights_while_the_head_trains(tmp_path, toy_root, one_thread):
    cfg = config_from_dict(finetune_config(tmp_path, toy_root, optim={"encoder_frozen_steps": 2, "warmup_steps": 1,
                                                                      "weight_decay": 0.5}))
    trainer = Trainer(cfg, DistInfo())

    def weights(prefix):
        return {n: p.detach().clone() for n, p in trainer.objective.named_parameters() if n.startswith(prefix)}

    def moved(before, prefix):
        return any(not torch.equal(before[n], now) for n, now in weights(prefix).items())

    encoder, head = weights("encoder."), weights("head.")
    batches = trainer.micro_batches()
    for _ in range(2):
        assert trainer.optimizer_step(batches) is not None
    assert not moved(encoder, "encoder.") and moved(head, "head.")  # weight decay spared it too
    trainer.optimizer_step(batches)
    assert moved(encoder, "encoder.")
    # Frozen for the whole run is refused, naming the key.
    with pytest.raises(ConfigError, match="encoder_frozen_steps.*whole run"):
        config_from_dict(finetune_config(tmp_path, toy_root, optim={"encoder_frozen_steps": 3, "warmup_steps": 1}))


# ----------------------------------------------------------------------------- a probe's head first (LP-FT)


def probe_of(folder: Path, toy_root: Path, seed: int, *start: str) -> Path:
    """python -m evals.attentive_probe on the fine-tuning config's toy clips, two heads, into ``folder``."""
    from evals.attentive_probe import main

    data = {"dataset": "toy", "toy_root": str(toy_root), "toy_task": "direction", "num_classes": 8,
            "toy_num_train": 48, "toy_num_val": 8, "toy_frames": 8, "toy_size": 32, "frames_per_clip": 4,
            "frame_step": 2, "crop_size": 32, "augment": False, "batch_size": 8, "num_workers": 0}
    probe = {"run": {"name": "lp", "seed": seed}, "data": data, "probe": {"num_heads": 4},
             "optim": {"lr": [1e-3, 1e-2], "weight_decay": [0.01]}, "train": {"epochs": 1, "cache_features": False}}
    main(["--fname", str(write_config(probe, folder.parent / f"{folder.name}.yaml")), "--device", "cpu",
          "--output-dir", str(folder), *start])
    return folder


def test_fine_tuning_starts_from_the_best_head_of_a_probe_of_the_same_weights(tmp_path, toy_root, one_thread):
    from vjm.eval.probe_state import best_head

    objective = {"head": "attentive", "num_heads": 4, "mixup": 0.0, "cutmix": 0.0, "ema": 0.9}
    raw = finetune_config(tmp_path, toy_root, objective)  # run.seed 3: the random encoder the probe must read
    config = write_config(raw, tmp_path / "ft.yaml")
    random_start = ("--random-init", "--pretrain-config", str(config))
    probe = probe_of(tmp_path / "probe", toy_root, 3, *random_start)
    raw["objective"]["init"] = {"head": str(probe)}
    trainer = Trainer(config_from_dict(raw), DistInfo())
    expected, results = best_head(probe)
    assert set(expected) == set(trainer.objective.head.state_dict())
    for name, value in trainer.objective.head.state_dict().items():
        torch.testing.assert_close(value, expected[name])
        torch.testing.assert_close(trainer.objective.ema.module["head"].state_dict()[name], expected[name])
    assert results["heads"][results["best_head"]]["top1"] == results["top1"]

    # A resumed run takes its head from its own checkpoint: the probe it started from may be gone.
    trainer.save()
    probe.rename(tmp_path / "probe_moved")
    resumed = Trainer(config_from_dict(raw), DistInfo())
    assert resumed.resume()
    for name, value in resumed.objective.head.state_dict().items():
        torch.testing.assert_close(value, expected[name])
    probe = (tmp_path / "probe_moved").rename(probe)
    (trainer.run_dir / "latest.pt").unlink()

    # Refused: a probe of other weights (seed 4, while the run draws from seed 3), a folder that is not a
    # probe, a mean-pooled head.
    other = probe_of(tmp_path / "other", toy_root, 4, *random_start)
    raw["objective"]["init"] = {"head": str(other)}
    torch.manual_seed(3)  # as the engine seeds it
    with pytest.raises(ValueError, match="read other encoder weights"):
        build_objective(config_from_dict(raw))
    raw["objective"]["init"] = {"head": str(tmp_path)}
    with pytest.raises(ValueError, match="is not a finished probe"):
        build_objective(config_from_dict(raw))
    raw["objective"].update(head="mean", init={"head": str(probe)})
    with pytest.raises(ConfigError, match="init.head.*'mean'"):
        config_from_dict(raw)


# ----------------------------------------------------------------------------- mixup / cutmix


def test_mixup_mixes_each_sample_with_its_neighbour_and_its_label_alike():
    """Pairs are neighbours (0-1, 2-3), never the batch's reverse: a pair never straddles two processes."""
    np.random.seed(0)
    clips, labels = torch.rand(4, 3, 2, 8, 8), torch.tensor([0, 1, 2, 3])
    mixed, targets = ClipMixup(4, mixup_alpha=0.8, cutmix_alpha=0.0, label_smoothing=0.0)(clips, labels)
    lam = targets[0, 0].item()
    assert 0 < lam < 1 and targets[0, 1].item() == pytest.approx(1 - lam) and targets[0, 3] == 0
    torch.testing.assert_close(targets.sum(dim=1), torch.ones(4))
    torch.testing.assert_close(mixed, lam * clips + (1 - lam) * clips[[1, 0, 3, 2]])
    assert not torch.equal(mixed, clips) and clips.shape == mixed.shape
    # Two clips per sample: clip k of a sample is mixed with clip k of the neighbouring sample.
    np.random.seed(0)
    mixed, targets = ClipMixup(4, mixup_alpha=0.8, cutmix_alpha=0.0, label_smoothing=0.0)(
        clips, torch.tensor([0, 0, 1, 1]), clips_per_sample=2)
    torch.testing.assert_close(mixed, lam * clips + (1 - lam) * clips[[2, 3, 0, 1]])
    assert targets[0, 1].item() == pytest.approx(1 - lam)
    # Halves of a batch, mixed apart as two processes would mix them, equal the whole batch mixed at once.
    halves = []
    for half in (slice(0, 2), slice(2, 4)):
        np.random.seed(0)
        halves.append(ClipMixup(4, mixup_alpha=0.8, cutmix_alpha=0.0)(clips[half], labels[half]))
    np.random.seed(0)
    whole = ClipMixup(4, mixup_alpha=0.8, cutmix_alpha=0.0)(clips, labels)
    torch.testing.assert_close(torch.cat([h[0] for h in halves]), whole[0])
    torch.testing.assert_close(torch.cat([h[1] for h in halves]), whole[1])


def test_cutmix_pastes_the_same_box_into_every_frame_and_labels_by_its_area():
    np.random.seed(2)  # a box of 47% of the frame
    clips, labels = torch.rand(2, 3, 4, 16, 16), torch.tensor([5, 2])
    mixed, targets = ClipMixup(6, mixup_alpha=0.0, cutmix_alpha=1.0, label_smoothing=0.1)(clips, labels)
    pasted = (mixed != clips)  # where clip 0 shows clip 1
    box = pasted[0, 0, 0]
    assert box.any() and all(torch.equal(pasted[0, c, t], box) for c in range(3) for t in range(4))
    torch.testing.assert_close(mixed[0][:, :, box], clips[1][:, :, box])
    area = box.float().mean().item()
    # Label smoothing 0.1 over 6 classes, then the box's share goes to the other clip's label.
    off, on = 0.1 / 6, 1 - 0.1 + 0.1 / 6
    assert targets[0, 5].item() == pytest.approx((1 - area) * on + area * off)
    assert targets[0, 2].item() == pytest.approx(area * on + (1 - area) * off)
    with pytest.raises(ValueError, match="an even number of samples of 1 clip\\(s\\), got 3 clips"):
        ClipMixup(6, cutmix_alpha=1.0)(torch.rand(3, 3, 4, 16, 16), torch.tensor([0, 1, 2]))


# ----------------------------------------------------------------------------- multi-view evaluation


class LogitClips(Dataset):
    """Items whose K clips carry their own logits in their 3 channels."""

    def __init__(self, logits: list[list[list[float]]], labels: list[int]):
        self.logits, self.label_list = torch.tensor(logits), labels

    def __len__(self):
        return len(self.label_list)

    def __getitem__(self, key):
        index = key.index
        return {"clips": self.logits[index].view(-1, 3, 1, 1, 1), "label": self.label_list[index], "index": index,
                "skipped": []}


def test_views_are_averaged_as_probabilities_per_video():
    # Video 0 (label 0): one view is sure of class 0; the other leans to 1 over 2 with huge logits.
    # Averaging logits would answer 1 ([5, 6, 5.95]); the probabilities' mean answers 0 ([0.5, 0.26, 0.24]),
    # as VideoMAE / VideoMamba's test-time merge and the probe do.
    # Video 1 (label 2): both views put class 2 second: a top-5 hit (of 3 classes), not a top-1 one.
    dataset = LogitClips([[[10, 0, 0], [0, 12, 11.9]], [[3, 0, 1], [3, 0, 1]]], labels=[0, 2])
    scores = evaluate_classifier(lambda clips: clips.flatten(1), dataset, batch_size=2, device=torch.device("cpu"))
    assert scores["top1"] == 50.0 and scores["top5"] == 100.0 and scores["num_val"] == 2
    p0 = (torch.tensor([[10.0, 0, 0], [0, 12, 11.9]]).softmax(-1).mean(0))[0]
    p1 = torch.tensor([3.0, 0, 1]).softmax(-1)[2]
    assert scores["loss"] == pytest.approx(-(p0.log() + p1.log()).item() / 2, rel=1e-5)
    assert collate_items  # the loader stacks the items' K clips: B x K x C x T x H x W


# ----------------------------------------------------------------------------- the encoder's start


def test_the_encoder_starts_from_the_checkpoint_and_a_uni_scan_expands_to_four(tmp_path, toy_root):
    uni = tiny_config(tmp_path / "uni", toy_root, model={"scan": "uni"})
    Trainer(config_from_dict(uni), DistInfo()).save()
    checkpoint = tmp_path / "uni" / "run" / "latest.pt"
    saved = torch.load(checkpoint, weights_only=True)["models"]["target_encoder"]  # V-JEPA's evaluated encoder
    quad = config_from_dict(finetune_config(tmp_path, toy_root, model={"scan": "quad"}))
    encoder = build_encoder(quad.model)
    info = load_encoder_weights(encoder, quad.model, checkpoint)
    assert info.objective == "vjepa" and info.which == "target_encoder"
    weights = encoder.state_dict()
    assert len(encoder.stack.blocks[0].mixer.directions) == 4
    for block in range(2):
        for k in range(4):
            for name in ("A_log", "D", "x_proj.weight", "conv1d.weight", "dt_proj.bias"):
                torch.testing.assert_close(weights[f"stack.blocks.{block}.mixer.directions.{k}.{name}"],
                                           saved[f"stack.blocks.{block}.mixer.directions.0.{name}"])
    torch.testing.assert_close(weights["stack.blocks.1.mixer.in_proj.weight"],
                               saved["stack.blocks.1.mixer.in_proj.weight"])
    assert encoder(torch.randn(1, 3, 4, 32, 32)).shape == (1, 8, 32)  # the 4-scan forward runs


def test_unusable_checkpoints_are_refused_in_one_line(tmp_path, toy_root, vjepa_checkpoint, capsys):
    from evals.finetune import main

    raw = finetune_config(tmp_path, toy_root)
    config = write_config(raw, tmp_path / "ft.yaml")

    def refused(*args, fname=config) -> str:
        with pytest.raises(SystemExit) as exit_:
            main(["--fname", str(fname), *args])
        assert exit_.value.code == 2
        return capsys.readouterr().err

    assert "missing.pt does not exist" in refused("--checkpoint", str(tmp_path / "missing.pt"))
    assert "has no encoder 'predictor'" in refused("--checkpoint", str(vjepa_checkpoint), "--encoder", "predictor")
    assert "give --checkpoint PATH" in refused()
    not_supervised = write_config(tiny_config(tmp_path, toy_root), tmp_path / "vjepa.yaml")
    assert "set objective.name = supervised" in refused("--random-init", fname=not_supervised)
    model = build_encoder(config_from_dict(finetune_config(tmp_path, toy_root)).model)
    with pytest.raises(FileNotFoundError, match="does not exist; pass the path of a .pt file written by vjm"):
        load_encoder_weights(model, config_from_dict(raw).model, tmp_path / "missing.pt")
    with pytest.raises(ValueError, match=r"\('vjepa' objective\) has no encoder 'predictor'; choose an encoder "
                                         r"from: target_encoder, encoder"):
        load_encoder_weights(model, config_from_dict(raw).model, vjepa_checkpoint, "predictor")
    wider = config_from_dict(finetune_config(tmp_path, toy_root)).model
    wider.embed_dim = 48
    with pytest.raises(ValueError) as error:
        load_encoder_weights(build_encoder(wider), wider, vjepa_checkpoint)
    assert "\n" not in str(error.value) and ("was trained with model.embed_dim=32; this config has "
                                             "model.embed_dim=48: its weights do not fit") in str(error.value)
    with pytest.raises(ConfigError, match="'objective.init.checkpoint' is not set"):
        config_from_dict(finetune_config(tmp_path, toy_root, {"init": {"encoder": "encoder"}}))


# ----------------------------------------------------------------------------- whole runs


def test_fine_tuning_a_checkpoint_and_training_from_scratch_write_results(tmp_path, toy_root, vjepa_checkpoint,
                                                                         capsys):
    from evals.finetune import main

    config = write_config({k: v for k, v in finetune_config(tmp_path, toy_root).items() if k != "run"} |
                          {"run": {"seed": 3}}, tmp_path / "ft_toy.yaml")
    tuned = main(["--fname", str(config), "--checkpoint", str(vjepa_checkpoint), "--devices", "cpu"])
    printed = capsys.readouterr().out.strip().splitlines()
    results = vjepa_checkpoint.parent / "ft_toy" / "results.json"
    assert printed[-1] == str(results) and json.loads(results.read_text()) == tuned
    assert tuned["init"] == {"checkpoint": str(vjepa_checkpoint), "encoder": None}
    assert tuned["step"] == 3 and tuned["weights"] == "ema" and tuned["segments_x_views"] == [2, 3]
    assert tuned["num_val"] == 8 and 0 <= tuned["top1"] <= tuned["top5"] <= 100 and tuned["chance_top1"] == 12.5
    state = torch.load(results.parent / "latest.pt", weights_only=True)
    assert set(state["models"]) == {"encoder", "head", "ema"}
    # The fine-tuned encoder moved away from the checkpoint's.
    pretrained = torch.load(vjepa_checkpoint, weights_only=True)["models"]["encoder"]
    assert not torch.equal(state["models"]["encoder"]["patch_embed.proj.weight"],
                           pretrained["patch_embed.proj.weight"])

    scratch_dir = tmp_path / "scratch"
    scratch = main(["--fname", str(config), "--random-init", "--devices", "cpu", "--output-dir", str(scratch_dir)])
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(scratch_dir / "results.json")
    assert scratch["init"] == "random_init" and scratch["step"] == 3
    # Run again: training is finished and the results are read back, not recomputed.
    assert main(["--fname", str(config), "--random-init", "--devices", "cpu", "--output-dir", str(scratch_dir)]) \
        == scratch


def test_an_exported_encoder_starts_fine_tuning_as_its_checkpoint_does(tmp_path, toy_root, vjepa_checkpoint):
    from vjm.export import main as export

    exported = tmp_path / "encoder.safetensors"
    export(["--checkpoint", str(vjepa_checkpoint), "--out", str(exported)])
    model = config_from_dict(finetune_config(tmp_path, toy_root)).model
    from_checkpoint, from_export = build_encoder(model), build_encoder(model)
    info = load_encoder_weights(from_export, model, exported)
    load_encoder_weights(from_checkpoint, model, vjepa_checkpoint)
    assert (info.objective, info.which) == ("vjepa", "target_encoder")
    for name, weight in from_checkpoint.state_dict().items():
        torch.testing.assert_close(from_export.state_dict()[name], weight)
    with pytest.raises(ValueError, match="it holds only 'target_encoder', not 'encoder'"):
        load_encoder_weights(build_encoder(model), model, exported, "encoder")
