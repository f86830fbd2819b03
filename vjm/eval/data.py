"""The datasets of an evaluation: training clips (one view, augmented or not) and evaluation clips.

Items come from vjm.data: ``{"clips": [K, C, T, H, W], "label", "index", "num_skipped"}`` with
K = num_segments * num_views, segment-major. Training takes one view per segment; evaluation
takes ``num_views`` crops of each of ``num_segments`` evenly spaced clips.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from vjm.data import build_dataset
from vjm.data.datasets import ClipDataset

from .config import EvalDataConfig

logger = logging.getLogger(__name__)

__all__ = ["EvalData", "build_eval_data", "holdout_split", "resolve_sources"]


@dataclass
class EvalData:
    train: ClipDataset
    val: ClipDataset
    num_classes: int
    # Training clips are the same every epoch (no augmentation, fixed segments): their features can be cached.
    train_is_static: bool
    # The heads train on train[train_positions] (None = all of it): what data.holdout_fraction leaves, of
    # which data.label_fraction. The best head is picked on holdout[holdout_positions], the held-out
    # videos taken as evaluation clips (``train`` itself when static).
    train_positions: np.ndarray | None = None
    holdout: ClipDataset | None = None
    holdout_positions: np.ndarray | None = None


def holdout_split(labels: np.ndarray, fraction: float, seed: int, keep: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held out): sorted positions, ``fraction`` of each class held out (at least one, and at most
    all but ``keep`` of the class), drawn from ``seed``."""
    generator = np.random.default_rng(seed)
    held = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        count = min(len(members) - keep, max(1, round(fraction * len(members))))
        held.append(generator.permutation(members)[:count])
    held = np.sort(np.concatenate(held))
    return np.setdiff1d(np.arange(len(labels)), held), held


def resolve_sources(data: EvalDataConfig) -> tuple[str, list[str], list[str]]:
    """-> (dataset kind for vjm.data, train sources, val sources); generates the toy dataset if needed."""
    if data.dataset in ("video", "image"):
        return data.dataset, list(data.train), list(data.val)
    from vjm.data.toy import ensure_toy_dataset  # generation pulls in scikit-learn and PIL

    paths = ensure_toy_dataset(data.toy_root, num_train=data.toy_num_train, num_val=data.toy_num_val,
                               frames=data.toy_frames, size=data.toy_size, seed=data.toy_seed)
    if data.dataset == "toy_image":
        return "image", [paths["image_train"]["digit"]], [paths["image_val"]["digit"]]
    return "video", [paths["train"][data.toy_task]], [paths["val"][data.toy_task]]


def build_eval_data(data: EvalDataConfig, seed: int = 0) -> EvalData:
    """Build both splits, check their labels against ``data.num_classes``, hold out
    ``data.holdout_fraction`` of the training videos (drawn from ``seed``) to pick the best head on,
    and keep ``data.label_fraction`` of the rest for the heads to train on."""
    kind, train_sources, val_sources = resolve_sources(data)
    common = dict(kind=kind, frames_per_clip=data.frames_per_clip, frame_step=data.frame_step, fps=data.fps,
                  crop_size=data.crop_size, decoder=data.decoder, short_video=data.short_video)
    if data.augment:
        train = build_dataset(paths=train_sources, training=True, num_clips=data.num_segments,
                              random_resize_scale=data.random_resize_scale,
                              random_resize_aspect=data.random_resize_aspect, hflip=data.hflip,
                              randaugment=data.randaugment, random_erasing=data.random_erasing, **common)
    else:
        train = build_dataset(paths=train_sources, training=False, num_segments=data.num_segments,
                              num_views=1, eval_crop="center", **common)
    val = build_dataset(paths=val_sources, training=False, num_segments=data.num_segments,
                        num_views=data.num_views, eval_crop="center" if data.num_views == 1 else "three", **common)
    found = max(train.num_classes, val.num_classes)
    num_classes = data.num_classes or train.num_classes
    if found > num_classes:
        raise ValueError(f"the data has labels up to {found - 1} but 'data.num_classes' = {num_classes}; "
                         f"raise it to at least {found}")
    if min(min(train.labels), min(val.labels)) < 0:
        raise ValueError("the data has negative labels; labels must be 0 .. num_classes - 1")
    logger.info("Evaluation data: %d training and %d validation samples, %d classes", len(train), len(val),
                num_classes)
    result = EvalData(train, val, num_classes, train_is_static=not data.augment)
    if data.holdout_fraction > 0:
        kept, held = holdout_split(train.labels, data.holdout_fraction, seed)
        if not len(held):
            raise ValueError(f"'data.holdout_fraction' = {data.holdout_fraction} holds out none of the {len(train)} "
                             "training samples (each class needs two or more); set it to 0 to pick the best "
                             "head on the validation clips")
        # Held-out videos are read as validation clips are: no augmentation, centre crop, one view.
        holdout = train if not data.augment else build_dataset(
            paths=train_sources, training=False, num_segments=data.num_segments, num_views=1, eval_crop="center",
            **common)
        result.train_positions, result.holdout, result.holdout_positions = kept, holdout, held
        logger.info("%d of the training samples are held out to pick the best head", len(held))
    if data.label_fraction < 1:
        kept = result.train_positions if result.train_positions is not None else np.arange(len(train))
        # Drawn per class as the held-out videos are, on the videos left, from a stream of its own.
        _, labelled = holdout_split(np.asarray(train.labels)[kept], data.label_fraction, seed + 1, keep=0)
        result.train_positions = kept[labelled]
        logger.info("The heads train on %d of the training samples (data.label_fraction %g)", len(labelled),
                    data.label_fraction)
    return result
