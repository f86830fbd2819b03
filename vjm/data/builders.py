"""The two calls the trainer and the evaluations make: ``build_dataset`` and ``build_loader``."""

from __future__ import annotations

import logging
import os
import signal
from typing import Callable, Sequence

import torch
from torch.utils.data import DataLoader

from .clip_sampling import ClipSampler
from .datasets import ClipDataset, ImageDataset, VideoDataset, collate_items
from .samplers import ResumableDistributedSampler, WorkerSeeder
from .sources import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, check_paths_exist, read_sources
from .transforms import IMAGENET_MEAN, IMAGENET_STD, build_transform

logger = logging.getLogger(__name__)

DATASET_KINDS = ("video", "image")


def build_dataset(
    *,
    kind: str = "video",
    paths: Sequence[str | os.PathLike] | str | os.PathLike,
    weights: Sequence[float] | None = None,
    frames_per_clip: int = 16,
    frame_step: int = 4,
    fps: float | None = None,
    num_clips: int = 1,
    num_segments: int = 1,
    num_views: int | None = None,
    crop_size: int = 224,
    training: bool = True,
    decoder: str = "pyav",
    decoder_threads: int = 1,
    short_video: str = "pad",
    random_resize_scale: Sequence[float] = (0.3, 1.0),
    random_resize_aspect: Sequence[float] = (3 / 4, 4 / 3),
    hflip: bool = True,
    randaugment: bool = False,
    randaugment_ops: int = 2,
    randaugment_magnitude: int = 9,
    random_erasing: float = 0.0,
    eval_crop: str = "center",
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    max_retries: int = 20,
    check_paths: int = 1000,
) -> ClipDataset:
    """A video or image dataset whose items are ``{"clips", "label", "index", "position", "num_skipped",
    "skipped"}``.

    Args:
        kind: ``"video"`` or ``"image"`` (images are one-frame clips; the clip sampling and
            decoder arguments do not apply to them).
        paths: file lists (``path label`` per line) and/or class folders (``root/<class>/*``).
        weights: sampling weight of each entry of ``paths`` (training only; mixes lists).
        frames_per_clip, frame_step: a clip is ``frames_per_clip`` frames ``frame_step`` apart;
            ``fps`` replaces ``frame_step`` by a target frame rate.
        num_clips: random clips per video in training.
        num_segments, num_views: evaluation takes ``num_segments`` evenly spaced clips, each in
            ``num_views`` crops (1 for ``eval_crop="center"``, 3 for ``"three"``; ``None`` derives it).
        decoder: ``"pyav"`` or ``"decord"``; ``decoder_threads`` per video (0 = library default).
        short_video: ``"pad"`` (repeat the last frame) or ``"skip"`` videos shorter than a clip.
        random_resize_scale, random_resize_aspect, hflip, randaugment*, random_erasing: training
            augmentation (random_erasing is a probability).
        max_retries: bad samples replaced in a row before giving up on an item.
        check_paths: paths per source checked to exist at start (-1: all, 0: none).
    """
    if kind not in DATASET_KINDS:
        raise ValueError(f"kind must be one of {DATASET_KINDS}, got {kind!r}.")
    transform = build_transform(
        training, crop_size, random_resize_scale, random_resize_aspect, hflip, randaugment,
        randaugment_ops, randaugment_magnitude, random_erasing, eval_crop, mean, std,
    )
    if num_views is not None and num_views != transform.num_views:
        raise ValueError(
            f"num_views={num_views} does not match the transform: "
            + ("training makes one view per clip" if training else
               f"eval_crop={eval_crop!r} makes {transform.num_views} view(s); "
               "use eval_crop='three' for 3 views or 'center' for 1")
            + "."
        )
    sources = read_sources(paths, VIDEO_EXTENSIONS if kind == "video" else IMAGE_EXTENSIONS)
    check_paths_exist(sources, max_checked=check_paths)
    if kind == "image":
        dataset = ImageDataset(sources, transform, weights, max_retries)
    else:
        clip_sampler = ClipSampler(
            frames_per_clip=frames_per_clip, frame_step=frame_step, fps=fps, num_clips=num_clips,
            num_segments=num_segments, training=training, short_video=short_video,
        )
        dataset = VideoDataset(sources, transform, clip_sampler, decoder, decoder_threads, weights, max_retries)
    logger.info(
        "Built %s %s dataset: %d samples from %d source(s)",
        "training" if training else "evaluation", kind, len(dataset), len(sources),
    )
    return dataset


class WorkerInit:
    """``worker_init_fn`` of our loaders: seeds the worker (WorkerSeeder) and leaves stop signals
    (Ctrl-C reaches every process of the terminal's group) to the main process, which finishes its
    step and then shuts the workers down itself; a worker dying on them would fail that step."""

    def __init__(self, seeder: WorkerSeeder):
        self.seeder = seeder

    def __call__(self, worker_id: int) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1):
            signal.signal(signum, signal.SIG_IGN)
        self.seeder(worker_id)


def build_loader(
    dataset: ClipDataset,
    batch_size: int,
    num_workers: int = 0,
    rank: int = 0,
    world_size: int = 1,
    seed: int = 0,
    collate_fn: Callable | None = None,
    drop_last: bool = True,
    training: bool = True,
    pin_memory: bool | None = None,
    prefetch_factor: int | None = None,
) -> DataLoader:
    """A DataLoader over this rank's share, with a resumable sampler at ``loader.sampler``.

    Each epoch: ``loader.sampler.set_epoch(epoch)``; to resume mid-epoch, follow it with
    ``loader.sampler.set_start(batch_index)`` (or ``load_state_dict``): iteration then yields the
    remaining batches only, and ``len(loader)`` counts them. Training shuffles, pads so ranks get
    equal shares and draws by the dataset's source weights; evaluation (``training=False``)
    keeps dataset order and visits every sample exactly once.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}.")
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}.")
    sampler = ResumableDistributedSampler(
        len(dataset),
        num_replicas=world_size,
        rank=rank,
        shuffle=training,
        seed=seed,
        weights=getattr(dataset, "sample_weights", None) if training else None,
        pad=training,
        batch_size=batch_size,
        drop_last=drop_last,
    )
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_fn or collate_items,
        drop_last=drop_last,
        pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
        worker_init_fn=WorkerInit(WorkerSeeder(seed, rank, sampler)),
        # Each iterator draws its workers' base seed from here, not from the global stream: starting an
        # epoch (or resuming mid-epoch, an extra start) must not move the training process's random
        # stream, which drop path and mixup draw from, or a resumed run would differ. WorkerSeeder
        # seeds the workers anyway.
        generator=torch.Generator().manual_seed(seed),
        prefetch_factor=prefetch_factor if num_workers > 0 else None,
        # Workers restart each epoch so WorkerSeeder sees the new epoch.
        persistent_workers=False,
    )
