"""Shared by the world-size tests (CPU gloo and two GPUs): one tiny recipe per registered objective,
and training that records every step's metrics, so one process can be compared with several."""

from __future__ import annotations

import copy
import json
from pathlib import Path

from test_train import RESUMABLE_OBJECTIVES, resumable_config

from vjm.config import ConfigError, config_from_dict
from vjm.objectives import objective_class
from vjm.train.distributed import DistInfo
from vjm.train.engine import Trainer

GLOBAL_BATCH = 8
STEPS = 3
# Relative tolerance of a step's metrics: the gradient all-reduce sums in another order.
RTOL = 1e-5


def recipe(tmp_path: Path, toy_root: Path, objective: str, processes: int) -> dict:
    """A tiny config for ``objective`` at a global batch of GLOBAL_BATCH spread over ``processes``.

    The objectives test_train knows get its resumable recipes, with every batch statistic and per-sample
    draw on: V-JEPA with VICReg on the context and drop path, the supervised one with mixup, cutmix and
    drop path. Any other registered objective gets its config section's defaults."""
    known = objective in RESUMABLE_OBJECTIVES
    raw = resumable_config(tmp_path, toy_root, objective if known else "vjepa")
    if not known:
        cls = objective_class(objective)
        raw["objective"] = {"name": objective}
        raw.pop("masks", None)  # the objective's default masks, if it takes any
        if not cls.config_class.needs_masks:
            raw["masks"] = []
    if objective == "vjepa":
        raw["regularizers"] = [{"kind": "vicreg", "apply_to": "context", "var_weight": 1.0, "cov_weight": 0.04}]
        raw["model"]["drop_path"] = 0.2
    raw["run"]["threads"] = 1
    raw["data"].update(batch_size=GLOBAL_BATCH // processes, num_workers=0)
    raw["train"].update(epochs=1, steps_per_epoch=STEPS, checkpoint_every=100, log_every=1, image_every=0,
                        tensorboard=False)
    return raw


def buildable(raw: dict) -> str | None:
    """Why the recipe's config cannot be built here (an objective that needs files this test lacks,
    a teacher checkpoint say), or None."""
    try:
        config_from_dict(copy.deepcopy(raw))
    except (ConfigError, ValueError, FileNotFoundError) as error:
        return str(error)
    return None


def train_recording_steps(cfg, dist: DistInfo) -> None:
    """The real trainer; rank 0 writes every step's logged metrics (means over the processes) to
    <run folder>/steps.json. A module-level function, so that launch.local can spawn it."""
    trainer = Trainer(cfg, dist)
    steps = []
    after_step = trainer.after_step

    def recording(metrics, run_log, clips_per_step):
        after_step(metrics, run_log, clips_per_step)
        steps.append(trainer.last)  # log_every=1: this step's means over the processes

    trainer.after_step = recording
    trainer.fit()
    if dist.is_main:
        (cfg.run_dir / "steps.json").write_text(json.dumps(steps))


def read_steps(raw: dict) -> list[dict[str, float]]:
    return json.loads((Path(raw["run"]["folder"]) / "steps.json").read_text())


def relative_differences(one: list[dict], many: list[dict]) -> dict[str, float]:
    """Per metric, the largest |a - b| / max(|a|, tiny) over the steps; every step and metric compared."""
    assert len(one) == len(many) == STEPS, (len(one), len(many))
    worst: dict[str, float] = {}
    for a, b in zip(one, many):
        assert a.keys() == b.keys()
        for key in a:
            scale = max(abs(a[key]), 1e-12)
            worst[key] = max(worst.get(key, 0.0), abs(a[key] - b[key]) / scale)
    return worst
