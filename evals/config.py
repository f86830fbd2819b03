"""The configuration of a frozen evaluation: YAML -> typed, validated dataclasses.

Built with vjm.config's generic machinery (``param`` fields, unknown-key errors with suggestions,
``--set key=value`` overrides), so an evaluation config reads and fails like a pre-training one.

    cfg = load_eval_config("configs/eval/toy_direction.yaml", ["optim.epochs=5"])

The encoder is not part of the file: it comes from ``--checkpoint`` (or is built randomly
initialised as the control), so one config probes any checkpoint.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from evals.probe import FEATURE_NORMS
from vjm.config import (
    AT_LEAST_1,
    NONNEG,
    POSITIVE,
    PROB,
    Range,
    config_from_dict,
    config_to_yaml,
    load_config,
    param,
)

__all__ = ["EvalConfig", "EvalDataConfig", "EvalOptimConfig", "EvalRunConfig", "EvalTrainConfig",
           "ProbeConfig", "eval_config_from_dict", "eval_config_to_yaml", "load_eval_config"]


@dataclass
class EvalRunConfig:
    """Identity of the evaluation and where it writes."""

    name: str | None = param(None, "evaluation name; defaults to the config file's stem")
    folder: str | None = param(None, "where the probe's state and results go; None = a folder "
                                     "probe_<name> beside the checkpoint")
    seed: int = param(0, "seed of the probe's initialisation, data order and a random-init encoder",
                      range=Range(0, 2**32 - 1))


@dataclass
class EvalDataConfig:
    """The labelled data and how clips are taken from it."""

    dataset: str = param("video", "video files, image files, the toy videos, or the toy images (digit task)",
                         choices=("video", "image", "toy", "toy_image"))
    train: list[str] = param([], "training sources: file lists ('path label' lines) or class folders")
    val: list[str] = param([], "validation sources, same forms as train")
    num_classes: int | None = param(None, "classes of the task; None = the largest training label + 1",
                                    range=AT_LEAST_1)
    toy_root: str = param("data/toy", "folder the toy dataset is generated into (once) and read from")
    toy_task: str = param("direction", "label of the toy videos: the digit shown, or its motion direction",
                          choices=("digit", "direction"))
    toy_num_train: int = param(1024, "number of toy training videos", range=AT_LEAST_1)
    toy_num_val: int = param(256, "number of toy validation videos", range=AT_LEAST_1)
    toy_frames: int = param(16, "frames per toy video", range=Range(2))
    toy_size: int = param(64, "height and width of toy frames in pixels", range=Range(16))
    toy_seed: int = param(0, "seed the toy dataset was generated with", range=NONNEG)
    frames_per_clip: int = param(16, "frames per clip (1 = image)", range=AT_LEAST_1)
    frame_step: int = param(4, "stride between sampled frames (ignored when fps is set)", range=AT_LEAST_1)
    fps: float | None = param(None, "sample frames at this rate instead of every frame_step frames",
                              range=POSITIVE)
    num_segments: int = param(1, "clips per video, evenly spaced in evaluation, random in training",
                              range=AT_LEAST_1)
    num_views: int = param(1, "spatial views per clip in evaluation (1 = centre crop, 3 = three crops); "
                              "training always takes one", choices=(1, 3))
    crop_size: int = param(224, "side of the square crop in pixels", range=AT_LEAST_1)
    augment: bool = param(True, "augment training clips (random resized crop, flip, RandAugment, erasing); "
                                "off = evaluation clips, whose features can be cached")
    random_resize_scale: tuple[float, float] = param((0.08, 1.0), "area fraction range of the random resized "
                                                     "crop", range=Range(0, 1, open_lo=True), ascending=True)
    random_resize_aspect: tuple[float, float] = param((0.75, 1.35), "aspect ratio range of the random "
                                                      "resized crop", range=POSITIVE, ascending=True)
    hflip: bool = param(True, "random horizontal flip (leave off where it changes the label, e.g. directions)")
    randaugment: bool = param(True, "RandAugment, the same on every frame of a clip")
    random_erasing: float = param(0.25, "probability of random erasing (same box on every frame)", range=PROB)
    decoder: str = param("pyav", "video decoding library", choices=("pyav", "decord"))
    short_video: str = param("pad", "videos shorter than a clip: repeat the last frame, or skip (counted)",
                             choices=("pad", "skip"))
    batch_size: int = param(16, "videos per batch", range=AT_LEAST_1)
    num_workers: int = param(8, "data loader worker processes", range=NONNEG)


@dataclass
class ProbeConfig:
    """The attentive classifier trained on the frozen tokens."""

    num_queries: int = param(1, "learned query tokens that cross-attend over the tokens (outputs averaged)",
                             range=AT_LEAST_1)
    depth: int = param(1, "blocks: depth - 1 self-attention blocks (V-JEPA 2's deeper probe), then the "
                          "cross-attention block", range=AT_LEAST_1)
    num_heads: int = param(12, "attention heads (must divide the encoder's width)", range=AT_LEAST_1)
    mlp_ratio: float = param(4.0, "hidden width of each block's MLP over the encoder's width", range=POSITIVE)
    segments: str = param("joint", "attend over the tokens of all segments together, or classify each "
                                   "segment separately and average", choices=("joint", "separate"))
    feature_norm: str = param("none", "standardise each channel of the frozen tokens first (BatchNorm without "
                                      "affine, as MAE's linear probe), or not", choices=FEATURE_NORMS)


@dataclass
class EvalOptimConfig:
    """AdamW with linear warmup then cosine decay; every (lr, weight_decay) pair is a head of its own."""

    lr: list[float] = param([1e-3], "peak learning rates; with several values (or weight decays) the heads "
                                    "train in parallel on the same features and the best is reported",
                            range=POSITIVE)
    weight_decay: list[float] = param([0.01], "weight decays, crossed with lr", range=NONNEG)
    warmup_epochs: float = param(0.0, "epochs of linear warmup from 0 to the peak lr", range=NONNEG)
    final_lr_scale: float = param(0.0, "learning rate at the end, as a fraction of the peak", range=PROB)
    betas: tuple[float, float] = param((0.9, 0.999), "AdamW betas", range=Range(0, 1, open_hi=True))
    clip_grad: float = param(0.0, "max gradient norm of each head; 0 = no clipping", range=NONNEG)

    @property
    def grid(self) -> list[tuple[float, float]]:
        """The (lr, weight_decay) of each head."""
        return list(itertools.product(self.lr, self.weight_decay))


@dataclass
class EvalTrainConfig:
    """The probe's training loop."""

    epochs: int = param(20, "passes over the training set", range=AT_LEAST_1)
    dtype: str = param("auto", "autocast dtype of the frozen encoder; auto = bf16 on CUDA, fp32 on CPU (the probe "
                               "trains in fp32: it is small, and in bf16 heads of the lr sweep diverged)",
                       choices=("auto", "bf16", "fp32"))
    cache_features: bool = param(False, "keep the frozen features in memory: validation always, training "
                                        "when data.augment is off (every epoch sees the same clips)")
    feature_cache_dir: str | None = param(None, "also store cached features on disk here, shared by "
                                                "evaluations of the same encoder on the same clips")
    eval_every: int = param(1, "epochs between validations (the last epoch is always validated)",
                            range=AT_LEAST_1)
    log_every: int = param(50, "training steps between progress lines", range=AT_LEAST_1)


@dataclass
class EvalConfig:
    """One frozen evaluation."""

    run: EvalRunConfig = dataclasses.field(default_factory=EvalRunConfig)
    data: EvalDataConfig = dataclasses.field(default_factory=EvalDataConfig)
    probe: ProbeConfig = dataclasses.field(default_factory=ProbeConfig)
    optim: EvalOptimConfig = dataclasses.field(default_factory=EvalOptimConfig)
    train: EvalTrainConfig = dataclasses.field(default_factory=EvalTrainConfig)

    def __post_init__(self) -> None:
        if self.run.name is None:
            self.run.name = "probe"

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))

    def cross_check(self) -> list[str]:
        """Problems that involve several keys (called by vjm.config.config_from_dict)."""
        d, errors = self.data, []
        if d.dataset in ("video", "image"):
            for split in ("train", "val"):
                if not getattr(d, split):
                    errors.append(f"'data.dataset' = {d.dataset!r} needs 'data.{split}': file lists or folders")
        elif d.train or d.val:
            errors.append(f"'data.dataset' = {d.dataset!r} generates its own lists; leave 'data.train' and "
                          "'data.val' empty (the toy_* keys choose the dataset)")
        if d.dataset in ("image", "toy_image") and (d.frames_per_clip != 1 or d.num_segments != 1):
            errors.append(f"'data.dataset' = {d.dataset!r} takes images: one-frame clips, so "
                          f"'data.frames_per_clip' and 'data.num_segments' must be 1 (got {d.frames_per_clip} "
                          f"and {d.num_segments})")
        if d.dataset == "toy_image" and d.toy_task != "digit":
            errors.append("'data.dataset' = 'toy_image' has only the 'digit' task; set 'data.toy_task' = 'digit'")
        if d.dataset == "toy" and d.augment and d.hflip and d.toy_task == "direction":
            errors.append("'data.hflip' mirrors the motion, which changes a 'direction' label; set "
                          "'data.hflip' = false (or 'data.augment' = false)")
        if self.train.feature_cache_dir is not None and not self.train.cache_features:
            errors.append("'train.feature_cache_dir' is set but 'train.cache_features' is off; turn it on")
        return errors


def _plain(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def load_eval_config(path: str | os.PathLike, overrides: Sequence[str] = ()) -> EvalConfig:
    """Read an evaluation YAML, apply ``key=value`` overrides, validate (ConfigError names every problem)."""
    return load_config(path, overrides, cls=EvalConfig)


def eval_config_from_dict(d: dict[str, Any], where: str = "") -> EvalConfig:
    return config_from_dict(d, where, cls=EvalConfig)


def eval_config_to_yaml(cfg: EvalConfig) -> str:
    return config_to_yaml(cfg)  # type: ignore[arg-type]  (it only needs .to_dict())

