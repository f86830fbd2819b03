"""A trained classifier judged on a validation set: every video's segments x views, predictions averaged.

    dataset = validation_dataset(cfg)       # data.val, with objective.evaluation's segments and views
    scores = evaluate_classifier(objective.logits, dataset, batch_size=8, device=..., dist=dist)

Video: ``num_segments`` evenly spaced clips of each video, each in ``num_views`` crops (K400's
5 x 3, SSv2's 2 x 3); images: one centre crop. Each clip is classified on its own and the class
probabilities of a video's clips are averaged (``average_predictions``, the probe's rule and
VideoMAE / VideoMamba's test-time merge), then ranked. With several processes each takes its
share of the videos and the counts are summed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import torch
import torch.distributed as torch_dist

from vjm.config import Config
from vjm.data import build_dataset, build_loader
from vjm.data.datasets import ClipDataset, SkippedFiles
from vjm.train.distributed import DistInfo

from .pooler import average_predictions

logger = logging.getLogger(__name__)

__all__ = ["evaluate_classifier", "validation_dataset"]


def validation_dataset(cfg: Config) -> ClipDataset:
    """The validation split of a supervised config: data.val (the toy videos' own split for the toy
    dataset), sampled as ``objective.evaluation`` says."""
    data, evaluation = cfg.data, cfg.objective.evaluation
    if data.dataset == "toy":
        from vjm.data.toy import ensure_toy_dataset  # generation pulls in scikit-learn and PIL

        lists = ensure_toy_dataset(data.toy_root, num_train=data.toy_num_train, num_val=data.toy_num_val,
                                   frames=data.toy_frames, size=data.toy_size, seed=cfg.run.seed)
        kind, paths = "video", [lists["val"][data.toy_task]]
    elif data.val:
        kind, paths = data.dataset, list(data.val)
    else:
        raise ValueError("evaluating the classifier needs validation data: set 'data.val' to file lists or folders "
                         "of labelled videos or images")
    if kind == "image" and evaluation.num_segments * evaluation.num_views != 1:
        raise ValueError(f"images are evaluated on one centre crop: set 'objective.evaluation.num_segments' and "
                         f"'num_views' to 1 (got {evaluation.num_segments} and {evaluation.num_views})")
    return build_dataset(kind=kind, paths=paths, training=False, frames_per_clip=data.frames_per_clip,
                         frame_step=data.frame_step, fps=data.fps, num_segments=evaluation.num_segments,
                         num_views=evaluation.num_views, eval_crop="center" if evaluation.num_views == 1 else "three",
                         crop_size=data.crop_size, decoder=data.decoder, short_video=data.short_video)


@torch.no_grad()
def evaluate_classifier(logits_of: Callable[[torch.Tensor], torch.Tensor], dataset: ClipDataset, *,
                        batch_size: int, device: torch.device, dist: DistInfo = DistInfo(), num_workers: int = 0,
                        amp_dtype: torch.dtype | None = None, log_every: int = 20) -> dict:
    """Top-1 / top-5 (%) and the loss (NLL of the averaged prediction) over the dataset's videos.

    ``logits_of`` maps clips (N x C x T x H x W) to N x classes logits; each item's K clips (segments
    x views) go through it together and their class probabilities are averaged."""
    loader = build_loader(dataset, batch_size, num_workers, dist.rank, dist.world_size, training=False,
                          drop_last=False, pin_memory=device.type == "cuda")
    totals = torch.zeros(4, dtype=torch.float64)  # top-1 hits, top-5 hits, summed loss, videos
    skipped = SkippedFiles()
    started, steps = time.monotonic(), len(loader)
    for i, batch in enumerate(loader):
        skipped.add(batch["skipped"])
        clips, labels = batch["clips"].to(device, non_blocking=True), batch["label"].to(device)
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            logits = logits_of(clips.flatten(0, 1)).float()
        probs = average_predictions(logits.view(*clips.shape[:2], -1))
        ranked = probs.topk(min(5, probs.shape[-1]), dim=-1).indices
        hits = ranked == labels[:, None]
        nll = -probs.gather(1, labels[:, None]).clamp_min(1e-12).log()
        totals += torch.tensor([hits[:, 0].sum().item(), hits.any(dim=-1).sum().item(), nll.sum().item(),
                                len(labels)], dtype=torch.float64)
        if dist.is_main and ((i + 1) % log_every == 0 or i + 1 == steps):
            elapsed = time.monotonic() - started
            logger.info("evaluation: batch %d/%d, %.1f videos/s, ETA %.0fs", i + 1, steps, totals[3] / elapsed,
                        (steps - i - 1) * elapsed / (i + 1))
    if dist.distributed:
        reduced = totals.to(device)
        torch_dist.all_reduce(reduced)
        totals = reduced.cpu()
    top1, top5, loss, count = totals.tolist()
    return {"top1": 100 * top1 / count, "top5": 100 * top5 / count, "loss": loss / count, "num_val": int(count),
            "skipped_files": len(skipped)}
