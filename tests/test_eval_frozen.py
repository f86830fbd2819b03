"""Checkpoint -> frozen encoder for any objective: the default child, clear errors, old checkpoints."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml

from evals import attentive_probe as ap
from vjm.config import ObjectiveConfig, config_from_dict, param
from vjm.data.toy import ensure_toy_dataset
from vjm.eval.frozen import load_frozen_encoder
from vjm.models import build, list_models, register_model
from vjm.objectives import Objective, objective_class, registry
from vjm.train.checkpoint import FORMAT_V1, save_checkpoint

TINY_MODEL = "frozen_test_videomamba"  # a 32-wide, 2-block VideoMamba that checkpoints can name

if TINY_MODEL not in list_models():
    @register_model
    def frozen_test_videomamba(**kwargs):
        return build("videomamba_tiny", **{"embed_dim": 32, "depth": 2, **kwargs})


@dataclass
class OneEncoderConfig(ObjectiveConfig):
    name: str = param("frozen_test_one_encoder", "an objective with one encoder, as MAE's")


class OneEncoder(Objective):
    """Stands in for an objective whose only encoder is ``encoder`` (MAE, ARM): no ``target_encoder``."""

    name = "frozen_test_one_encoder"
    config_class = OneEncoderConfig
    encoders = ("encoder",)
    eval_encoder = "encoder"


@pytest.fixture
def one_encoder_objective(monkeypatch):
    objective_class("vjepa")  # the built-in objectives register first
    monkeypatch.setitem(registry._OBJECTIVES, OneEncoder.name, OneEncoder)
    return OneEncoder.name


def encoder_weights(seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return build(TINY_MODEL).state_dict()


def write_checkpoint(path: Path, objective: str, models: dict) -> Path:
    cfg = config_from_dict({"model": {"name": TINY_MODEL}, "objective": {"name": objective}})
    return save_checkpoint({"config": cfg.to_dict(), "objective": objective, "step": 5, "models": models}, path)


def assert_weights(encoder: torch.nn.Module, weights: dict[str, torch.Tensor]) -> None:
    state = encoder.state_dict()
    assert state.keys() == weights.keys()
    for name, tensor in weights.items():
        assert torch.equal(state[name], tensor), name


# ------------------------------------------------------------------------------------------ which child


def test_default_is_the_encoder_the_objective_names(tmp_path, one_encoder_objective):
    vjepa = write_checkpoint(tmp_path / "vjepa.pt", "vjepa",
                             {"encoder": encoder_weights(1), "target_encoder": encoder_weights(2), "predictor": {}})
    encoder, info = load_frozen_encoder(vjepa)
    assert (info.objective, info.which) == ("vjepa", objective_class("vjepa").eval_encoder)
    assert_weights(encoder, encoder_weights(2))

    one = write_checkpoint(tmp_path / "one.pt", one_encoder_objective, {"encoder": encoder_weights(3)})
    encoder, info = load_frozen_encoder(one)
    assert (info.objective, info.which, info.step) == (one_encoder_objective, "encoder", 5)
    assert_weights(encoder, encoder_weights(3))
    # The control of the same checkpoint: its architecture, other weights.
    control, control_info = load_frozen_encoder(one, random_init=True, seed=0)
    assert control_info.which == "random_init" and control_info.objective == one_encoder_objective
    assert control.state_dict().keys() == encoder.state_dict().keys()


def test_a_child_the_checkpoint_lacks_names_the_valid_ones(tmp_path, one_encoder_objective):
    one = write_checkpoint(tmp_path / "one.pt", one_encoder_objective, {"encoder": encoder_weights(3)})
    with pytest.raises(ValueError, match=r"has no encoder 'target_encoder'; choose an encoder from: encoder "):
        load_frozen_encoder(one, "target_encoder")
    # A child that is not an encoder (V-JEPA's predictor) is refused the same way.
    vjepa = write_checkpoint(tmp_path / "vjepa.pt", "vjepa",
                             {"encoder": encoder_weights(1), "target_encoder": encoder_weights(2), "predictor": {}})
    with pytest.raises(ValueError, match="has no encoder 'predictor'; choose an encoder from: target_encoder, encoder"):
        load_frozen_encoder(vjepa, "predictor")
    with pytest.raises(ValueError, match="takes no child"):
        load_frozen_encoder(vjepa, "encoder", random_init=True)


def test_an_unknown_objective_names_the_registered_ones(tmp_path):
    cfg = config_from_dict({"model": {"name": TINY_MODEL}})
    path = save_checkpoint({"config": cfg.to_dict(), "objective": "jepa2000", "step": 1,
                            "models": {"encoder": encoder_weights(1)}}, tmp_path / "future.pt")
    with pytest.raises(ValueError, match=r"objective 'jepa2000', which this vjm does not register \(it has: .*vjepa"):
        load_frozen_encoder(path)


def test_cli_takes_child_names_and_the_old_spellings(tmp_path, capsys):
    vjepa = write_checkpoint(tmp_path / "run" / "latest.pt", "vjepa",
                             {"encoder": encoder_weights(1), "target_encoder": encoder_weights(2), "predictor": {}})
    config = tmp_path / "e.yaml"
    config.write_text("data: {dataset: toy, augment: false}\n")
    with pytest.raises(SystemExit) as exit_info:
        ap.main(["--fname", str(config), "--checkpoint", str(vjepa), "--encoder", "decoder"])
    assert exit_info.value.code == 2
    assert "choose an encoder from: target_encoder, encoder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        ap.main(["--fname", str(config), "--checkpoint", str(vjepa), "--encoder", "encoder", "--random-init"])
    assert "leave out --encoder" in capsys.readouterr().err
    help_text = " ".join(ap._encoder_help().split())
    assert "vjepa: target_encoder, encoder (default target_encoder)" in help_text
    assert "Deprecated spellings: target = target_encoder, context = encoder" in help_text


# ------------------------------------------------------------------------------------------ old checkpoints


def write_v1_checkpoint(path: Path) -> Path:
    """A checkpoint as the first format wrote it: V-JEPA only, its predictor and EMA in other sections."""
    config = {
        "run": {"name": "old_run", "seed": 0},
        "data": {"dataset": "toy", "frames_per_clip": 4, "frame_step": 2, "crop_size": 32},
        "model": {"name": TINY_MODEL},
        "objective": {"name": "vjepa", "loss": "l1", "var_weight": 0.0, "var_form": "sqrt", "target_layernorm": True,
                      "context_var_weight": 0.0, "context_cov_weight": 0.0},
        "predictor": {"kind": "mamba", "width": 16, "depth": 1, "num_heads": 2},
        "optim": {"lr": 6.25e-4, "ema_momentum": [0.99, 1.0]},
    }
    models = {"encoder": encoder_weights(1), "target_encoder": encoder_weights(2),
              "predictor": {"proj.weight": torch.zeros(2, 2)}}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": FORMAT_V1, "config": config, "step": 11, "epoch": 0, "models": models}, path)
    return path


def test_an_old_format_checkpoint_still_probes(tmp_path, capsys):
    checkpoint = write_v1_checkpoint(tmp_path / "old" / "latest.pt")
    encoder, info = load_frozen_encoder(checkpoint)
    assert (info.objective, info.which, info.step) == ("vjepa", "target_encoder", 11)
    assert_weights(encoder, encoder_weights(2))

    root = tmp_path / "toy"
    ensure_toy_dataset(root, num_train=16, num_val=8, frames=8, size=32)
    config = tmp_path / "probe.yaml"
    config.write_text(yaml.safe_dump({
        "run": {"name": "old_probe"},
        "data": {"dataset": "toy", "toy_root": str(root), "toy_task": "direction", "num_classes": 8,
                 "toy_num_train": 16, "toy_num_val": 8, "toy_frames": 8, "toy_size": 32, "frames_per_clip": 4,
                 "frame_step": 2, "crop_size": 32, "augment": False, "batch_size": 8, "num_workers": 0},
        "probe": {"num_heads": 4}, "train": {"epochs": 1, "cache_features": True}}))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ap.main(["--fname", str(config), "--checkpoint", str(checkpoint), "--device", "cpu", "--encoder", "context"])
    finally:
        torch.set_num_threads(threads)
    results = json.loads(Path(capsys.readouterr().out.strip().splitlines()[-1]).read_text())
    assert results["encoder"]["objective"] == "vjepa" and results["encoder"]["which"] == "encoder"
    assert results["encoder"]["step"] == 11 and 0 <= results["top1"] <= 100
    assert (checkpoint.parent / "probe_old_probe_encoder" / "results.json").is_file()

