"""The supervised objective: the same encoder trained with the labels, the upper bound of quality tables."""

import pytest
import torch

from vjm.config import config_from_dict
from vjm.objectives import build_objective
from vjm.train.distributed import DistInfo
from vjm.train.engine import Trainer

from test_train import read_losses, tiny_config


def supervised_config(tmp_path, toy_root, **objective):
    raw = tiny_config(tmp_path, toy_root, data={"toy_task": "direction"})
    del raw["masks"]
    raw["objective"] = {"name": "supervised", "num_classes": 8, **objective}
    return raw


def test_supervised_loss_is_cross_entropy_of_the_pooled_tokens(tmp_path):
    cfg = config_from_dict(supervised_config(tmp_path, tmp_path, label_smoothing=0.1, head="mean"))
    objective = build_objective(cfg)
    clip, labels = torch.randn(3, 3, 4, 32, 32), torch.tensor([0, 7, 3])
    loss, metrics = objective({"clip": clip, "label": labels})
    logits = objective.head(objective.encoder(clip))
    torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(logits, labels, label_smoothing=0.1))
    assert metrics["top1"] == pytest.approx(100 * (logits.argmax(-1) == labels).float().mean().item())
    with pytest.raises(ValueError, match="a label is 9 but objective.num_classes = 8; raise it to at least 10"):
        objective({"clip": clip, "label": torch.tensor([0, 9, 3])})


def test_supervised_trains_through_the_engine_without_masks(tmp_path):
    cfg = config_from_dict(supervised_config(tmp_path, tmp_path / "toy", num_heads=4))  # the attentive head
    assert cfg.masks == []
    result = Trainer(cfg, DistInfo()).fit()
    losses = read_losses(cfg.run_dir)
    assert sorted(losses) == list(range(1, 11)) and "top1" in result
