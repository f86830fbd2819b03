"""The configuration of a frozen evaluation: YAML -> typed, validated dataclasses.

Built with vjm.config's generic machinery (``param`` fields, unknown-key errors with suggestions,
``--set key=value`` overrides), so an evaluation config reads and fails like a pre-training one.

    cfg = load_eval_config("configs/eval/toy_direction.yaml", ["train.epochs=5"])

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

from vjm.config import (
    AT_LEAST_1,
    NONNEG,
    POSITIVE,
    PROB,
    DataConfig,
    Range,
    config_from_dict,
    config_to_yaml,
    load_config,
    param,
)

from .pooler import FEATURE_NORMS

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
    threads: int | None = param(None, "intra-op CPU threads; None = OMP_NUM_THREADS when set, else the cores "
                                      "the process may use less its loader workers (vjm.cpu)", range=AT_LEAST_1)


def _redeclared(name: str, default: Any, **changes: Any) -> Any:
    """Pre-training's ``data.<name>`` key with an evaluation's default (and ``help``/``choices`` where given)."""
    base = next(f for f in dataclasses.fields(DataConfig) if f.name == name)
    meta = {**base.metadata, **changes}
    return param(default, meta["help"], range=meta["range"], choices=meta["choices"], ascending=meta["ascending"],
                 check=meta["check"], variants=meta["variants"])


@dataclass
class EvalDataConfig(DataConfig):
    """The labelled data and how clips are taken from it: pre-training's data keys, plus the
    evaluation's own (classes, segments and views, whether training clips are augmented)."""

    # Pre-training's keys whose defaults differ here: evaluation protocols augment as V-JEPA's probe does.
    dataset: str = _redeclared("dataset", "video", help="video files, image files, the toy videos, or the toy "
                               "images (digit task)", choices=("video", "image", "toy", "toy_image"))
    crop_size: int = _redeclared("crop_size", 224, help="side of the square crop in pixels (training and evaluation)")
    random_resize_scale: tuple[float, float] = _redeclared("random_resize_scale", (0.08, 1.0))
    randaugment: bool = _redeclared("randaugment", True)
    random_erasing: float = _redeclared("random_erasing", 0.25)
    batch_size: int = _redeclared("batch_size", 16, help="videos per batch")

    # The evaluation's own keys.
    num_classes: int | None = param(None, "classes of the task; None = the largest training label + 1",
                                    range=AT_LEAST_1)
    toy_seed: int = param(0, "seed the toy dataset was generated with (pre-training's run.seed)", range=NONNEG)
    num_segments: int = param(1, "clips per video, evenly spaced in evaluation, random in training",
                              range=AT_LEAST_1)
    num_views: int = param(1, "spatial views per clip in evaluation (1 = centre crop, 3 = three crops); "
                              "training always takes one", choices=(1, 3))
    augment: bool = param(True, "augment training clips (random resized crop, flip, RandAugment, erasing); "
                                "off = evaluation clips, whose features can be cached")
    holdout_fraction: float = param(0.0, "share of the training videos kept out of the heads' training to pick the "
                                         "best head (per class, drawn from run.seed); 0 = pick it on the validation "
                                         "clips, V-JEPA's practice, which favours encoders whose heads disagree",
                                    range=Range(0, 0.5))
    label_fraction: float = param(1.0, "share of each class's training videos the heads train on (low-shot "
                                       "frozen evaluation, as V-JEPA's 5 / 10 / 50%; at least one a class), "
                                       "drawn from run.seed after the held-out ones; the rest go unused",
                                  range=Range(0, 1, open_lo=True))

    def cross_check(self) -> list[str]:
        """Problems between the data keys of an evaluation."""
        errors = []
        if self.weights is not None:
            errors.append("'data.weights' mixes pre-training sources; an evaluation reads every sample of its "
                          "sources each epoch: remove it")
        if self.num_clips != 1:
            errors.append(f"'data.num_clips' = {self.num_clips} is pre-training's clips per video; an evaluation "
                          "takes 'data.num_segments' clips per video: set that instead")
        if self.dataset in ("video", "image"):
            for split in ("train", "val"):
                if not getattr(self, split):
                    errors.append(f"'data.dataset' = {self.dataset!r} needs 'data.{split}': file lists or folders")
        elif self.train or self.val:
            errors.append(f"'data.dataset' = {self.dataset!r} generates its own lists; leave 'data.train' and "
                          "'data.val' empty (the toy_* keys choose the dataset)")
        if self.dataset in ("image", "toy_image") and (self.frames_per_clip != 1 or self.num_segments != 1):
            errors.append(f"'data.dataset' = {self.dataset!r} takes images: one-frame clips, so "
                          f"'data.frames_per_clip' and 'data.num_segments' must be 1 (got {self.frames_per_clip} "
                          f"and {self.num_segments})")
        if self.dataset == "toy_image" and self.toy_task != "digit":
            errors.append("'data.dataset' = 'toy_image' has only the 'digit' task; set 'data.toy_task' = 'digit'")
        if self.dataset == "toy" and self.augment and self.hflip and self.toy_task == "direction":
            errors.append("'data.hflip' mirrors the motion, which changes a 'direction' label; set "
                          "'data.hflip' = false (or 'data.augment' = false)")
        return errors


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
    early_stopping: bool = param(False, "read each head at the validated epoch where it scored best on the "
                                        "held-out training clips (needs data.holdout_fraction), rather than "
                                        "at the last epoch: a head that starts to memorise its clips is read "
                                        "before it does")
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
        errors = self.data.cross_check()
        if self.train.feature_cache_dir is not None and not self.train.cache_features:
            errors.append("'train.feature_cache_dir' is set but 'train.cache_features' is off; turn it on")
        if self.train.early_stopping and self.data.holdout_fraction == 0:
            errors.append("'train.early_stopping' picks each head's epoch on held-out training clips, but "
                          "'data.holdout_fraction' is 0; set it (e.g. 0.2) or turn early stopping off")
        return errors


def _plain(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def load_eval_config(path: str | os.PathLike, overrides: Sequence[str] = (), *, check_data: bool = True
                     ) -> EvalConfig:
    """Read an evaluation YAML, apply ``key=value`` overrides, validate (ConfigError names every problem);
    ``check_data`` also reads its file lists (see vjm.config.load_config)."""
    return load_config(path, overrides, cls=EvalConfig, check_data=check_data)


def eval_config_from_dict(d: dict[str, Any], where: str = "") -> EvalConfig:
    return config_from_dict(d, where, cls=EvalConfig)


def eval_config_to_yaml(cfg: EvalConfig) -> str:
    return config_to_yaml(cfg)  # type: ignore[arg-type]  (it only needs .to_dict())

