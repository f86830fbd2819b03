"""Shared by the pixel objectives' tests (MAE, ARM): a toy config shrunk to seconds, and a training
run that records the pictures it sends to TensorBoard."""

from __future__ import annotations

from pathlib import Path

import pytest

from vjm.train.distributed import DistInfo
from vjm.train.engine import Trainer
from vjm.train.run_log import RunLog


def shrunk_toy_overrides(run_dir: Path, toy_root: Path) -> list[str]:
    """48 toy clips of 8 frames at 32 x 32, 4-frame clips in batches of 4, a 32-wide model, no workers."""
    return [f"run.folder={run_dir}", f"data.toy_root={toy_root}", "data.toy_num_train=48", "data.toy_num_val=8",
            "data.toy_frames=8", "data.toy_size=32", "data.frames_per_clip=4", "data.crop_size=32",
            "data.batch_size=4", "data.num_workers=0", "data.pin_memory=false", "model.embed_dim=32"]


def fit_recording_pictures(cfg) -> list[tuple[int, dict[str, tuple[int, ...]]]]:
    """Train ``cfg``; -> (step, {name: shape}) of every picture written to TensorBoard."""
    pictures = []
    write_images = RunLog.write_images

    def recording(self, step, images):
        pictures.append((step, {name: tuple(picture.shape) for name, picture in images.items()}))
        write_images(self, step, images)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(RunLog, "write_images", recording)
        Trainer(cfg, DistInfo()).fit()
    return pictures
