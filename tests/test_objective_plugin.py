"""An objective is a plugin: this file adds one (no masks, no EMA, a config section of its own)
and trains it through the real engine, checkpoints and resumes it, touching no other file."""

from dataclasses import dataclass

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from vjm.config import POSITIVE, ConfigError, ObjectiveConfig, config_from_dict, param
from vjm.models import build_encoder
from vjm.objectives import Objective, objective_class, register_objective
from vjm.train.checkpoint import load_checkpoint
from vjm.train.distributed import DistInfo
from vjm.train.engine import Trainer

from test_train import read_losses, tiny_config


@dataclass
class PooledRegressionConfig(ObjectiveConfig):
    """Regress a scaled label from mean-pooled tokens."""

    name: str = param("test_pooled_regression", "this test's objective")
    label_scale: float = param(0.5, "the regression target is label x label_scale", range=POSITIVE)


@register_objective("test_pooled_regression", PooledRegressionConfig)
class PooledRegression(Objective):
    encoders = ("encoder",)
    eval_encoder = "encoder"

    def __init__(self, encoder: nn.Module, label_scale: float):
        super().__init__()
        self.encoder, self.head, self.label_scale = encoder, nn.Linear(encoder.embed_dim, 1), label_scale

    @classmethod
    def from_config(cls, cfg):
        return cls(build_encoder(cfg.model), cfg.objective.label_scale)

    def forward(self, batch):
        assert "masks" not in batch, "the engine drew masks for an objective that needs none"
        prediction = self.head(self.encoder(batch["clip"]).mean(dim=1)).squeeze(-1)
        loss = F.mse_loss(prediction.float(), batch["label"].float() * self.label_scale)
        return loss, {"loss": loss.detach(), "prediction_std": prediction.detach().float().std()}


def plugin_config(tmp_path, toy_root, **sections):
    raw = tiny_config(tmp_path, toy_root, **sections)
    del raw["masks"]
    raw["objective"] = {"name": "test_pooled_regression", "label_scale": 0.25}
    return raw


def test_the_objective_section_is_its_own_and_masks_are_not_drawn(tmp_path, toy_root):
    cfg = config_from_dict(plugin_config(tmp_path, toy_root))
    assert cfg.masks == [] and cfg.objective.label_scale == 0.25
    assert objective_class("test_pooled_regression") is PooledRegression
    with pytest.raises(ConfigError, match="did you mean 'objective.label_scale'"):
        config_from_dict({**plugin_config(tmp_path, toy_root), "objective": {"name": "test_pooled_regression",
                                                                             "label_scal": 1.0}})
    with pytest.raises(ConfigError, match="uses no masks, but 'masks' lists 1"):
        config_from_dict({**plugin_config(tmp_path, toy_root), "masks": [{"kind": "tube", "ratio": 0.5}]})


def test_a_plugin_objective_trains_checkpoints_and_resumes_exactly(tmp_path, toy_root, monkeypatch):
    reference = config_from_dict(plugin_config(tmp_path / "a", toy_root))
    result = Trainer(reference, DistInfo()).fit()
    expected = read_losses(reference.run_dir)
    assert sorted(expected) == list(range(1, 11)) and expected[10] < expected[1]
    assert "prediction_std" in result and "ema" not in result
    state = load_checkpoint(reference.run_dir / "latest.pt")
    assert state["objective"] == "test_pooled_regression" and set(state["models"]) == {"encoder", "head"}

    # The same run, interrupted after step 4 (its last checkpoint is step 3), then started again.
    cfg = config_from_dict(plugin_config(tmp_path / "b", toy_root))
    interrupted = Trainer(cfg, DistInfo())
    step = interrupted.optimizer_step

    def crash_after_step_4(batches):
        if interrupted.step == 4:
            raise KeyboardInterrupt
        return step(batches)

    monkeypatch.setattr(interrupted, "optimizer_step", crash_after_step_4)
    with pytest.raises(KeyboardInterrupt):
        interrupted.fit()
    assert load_checkpoint(cfg.run_dir / "latest.pt")["step"] == 3
    monkeypatch.undo()
    resumed = Trainer(cfg, DistInfo())
    resumed.fit()
    assert resumed.step == 10
    assert read_losses(cfg.run_dir) == expected  # steps 4-10 repeat exactly what the uninterrupted run did
