"""Fine-tuning and the supervised baseline: train a ``supervised`` config through the engine, then
judge its classifier on the validation set; the library behind ``python -m evals.finetune``.

    launch_local(cfg, devices, train_fn=train_and_evaluate)     # or launch.submitit's submit(...)

``train_and_evaluate`` is a launcher's training function, so DDP, bf16, exact resume, logs and SLURM
requeue are pre-training's. Once training has finished (now, or in an earlier run of the same
command) every process evaluates its share of data.val and the main one writes results.json
beside the checkpoints: top-1 / top-5 (%), chance, where the encoder started, the last training
metrics. A finished run that is started again only re-reads its results.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from vjm.config import Config
from vjm.train.distributed import DistInfo
from vjm.train.engine import Trainer, autocast_dtype

from .classify import evaluate_classifier, validation_dataset

logger = logging.getLogger(__name__)

__all__ = ["RESULTS_FILE", "check_finetune_config", "results_path", "train_and_evaluate"]

RESULTS_FILE = "results.json"


def results_path(cfg: Config) -> Path:
    return cfg.run_dir / RESULTS_FILE


def check_finetune_config(cfg: Config) -> None:
    """A ValueError naming the fix when ``cfg`` cannot be fine-tuned and evaluated."""
    if cfg.objective.name != "supervised":
        raise ValueError(f"fine-tuning trains the 'supervised' objective (an encoder and a classifier head); this "
                         f"config's objective is {cfg.objective.name!r}: set objective.name = supervised "
                         "(configs/eval/finetune_toy.yaml is an example)")
    if cfg.data.dataset != "toy" and not cfg.data.val:
        raise ValueError("fine-tuning is evaluated on 'data.val': give it file lists or folders of labelled "
                         f"{cfg.data.dataset}s")


def train_and_evaluate(cfg: Config, dist: DistInfo) -> dict[str, Any]:
    """Train (resuming from the run folder's latest.pt), then evaluate; returns the results."""
    check_finetune_config(cfg)
    trainer = Trainer(cfg, dist)
    last = trainer.fit()
    path = results_path(cfg)
    if path.is_file():
        saved = json.loads(path.read_text())
        if saved.get("step") == trainer.step and saved.get("segments_x_views") == [
                cfg.objective.evaluation.num_segments, cfg.objective.evaluation.num_views]:
            logger.info("already evaluated at step %d: %s", trainer.step, path)
            return saved
    objective, evaluation = trainer.objective, cfg.objective.evaluation
    objective.eval()
    scores = evaluate_classifier(objective.logits, validation_dataset(cfg), batch_size=evaluation.batch_size,
                                 device=dist.device, dist=dist, num_workers=cfg.data.num_workers,
                                 amp_dtype=autocast_dtype(cfg, dist.device))
    init = cfg.objective.init
    results = {
        "eval": cfg.run.name, "top1": scores["top1"], "top5": scores["top5"], "loss": scores["loss"],
        "chance_top1": 100.0 / cfg.objective.num_classes, "num_classes": cfg.objective.num_classes,
        "num_train": len(trainer.loader.dataset), "num_val": scores["num_val"],
        "segments_x_views": [evaluation.num_segments, evaluation.num_views],
        "weights": "ema" if objective.ema is not None else "trained",
        "init": {"checkpoint": init.checkpoint, "encoder": init.encoder} if init.checkpoint else "random_init",
        "model": cfg.model.name, "step": trainer.step, "epochs": cfg.train.epochs,
        "skipped_files": {"train": len(trainer.skipped), "val": scores["skipped_files"]},
        "train_last": last, "config": cfg.to_dict(),
    }
    if dist.is_main:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(results, indent=1))
        os.replace(tmp, path)
        logger.info("%s: top1 %.2f top5 %.2f on %d videos (%d x %d clips each, %s weights)", cfg.run.name,
                    results["top1"], results["top5"], results["num_val"], evaluation.num_segments,
                    evaluation.num_views, results["weights"])
    return results
