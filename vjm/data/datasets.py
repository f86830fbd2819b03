"""Video and image datasets that return clips and never crash on a bad file.

An item is a dict::

    {"clips": float [K, C, T, H, W],  # K = num_clips (training) or num_segments * num_views
     "label": int,                    # (evaluation, segment-major); images have T = 1
     "index": int,                    # dataset index of the sample actually returned
     "position": int,                 # where it was asked for: the sampler's position in the epoch's
                                      # global order, or the dataset index asked for (masks key on it)
     "num_skipped": int,              # bad files skipped to produce this item
     "skipped": [(path, reason), ...]}  # which they were, and why

A missing, empty, truncated or undecodable file (or, with ``short_video="skip"``, a too-short
video) is replaced by another sample; ``skipped`` carries it through DataLoader workers (and
``collate_items`` or the mask collator through batches) to a :class:`SkippedFiles`, which names
each distinct file once in the log and counts it once, however often it is met.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from .clip_sampling import ClipSampler, ShortVideoError
from .decoders import DecodeError, check_decoder, open_video, read_image
from .errors import UnreadableDataError
from .samplers import SampleKey
from .sources import Sample, SampleTable, Source, sample_weights
from .transforms import ClipTransform

logger = logging.getLogger(__name__)


class ClipDataset(Dataset):
    """Shared by video and image datasets: indexing, per-sample seeding, skipping bad files."""

    def __init__(
        self,
        sources: Sequence[Source],
        transform: ClipTransform,
        weights: Sequence[float] | None = None,
        max_retries: int = 20,
    ):
        self.source_names = [source.name for source in sources]
        self.samples = SampleTable([s for source in sources for s in source.samples])
        if not len(self.samples):
            raise ValueError("The dataset has no samples.")
        self.sample_weights = sample_weights(sources, weights)  # float64 [N] or None
        self.transform = transform
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}.")
        self.max_retries = max_retries
        self._bad: dict[int, str] = {}  # index -> reason, per process (each worker has its own)
        self.num_skipped = 0  # in this process

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def labels(self) -> np.ndarray:
        return self.samples.labels

    @property
    def num_classes(self) -> int:
        return int(self.labels.max()) + 1

    def subset(self, indices: Sequence[int]) -> "ClipDataset":
        """The same dataset over the samples at ``indices`` (in that order), with their own indices."""
        indices = np.asarray(indices, dtype=np.int64)
        part = copy.copy(self)
        part.samples = SampleTable([self.samples[int(i)] for i in indices])
        if not len(part.samples):
            raise ValueError("a subset needs at least one sample")
        part.sample_weights = None if self.sample_weights is None else self.sample_weights[indices]
        part._bad, part.num_skipped = {}, 0
        return part

    def load(self, sample: Sample) -> torch.Tensor:
        """The clips ``[K, C, T, H, W]`` of one sample; raises DecodeError / ShortVideoError."""
        raise NotImplementedError

    def __getitem__(self, key: int | SampleKey) -> dict:
        if isinstance(key, SampleKey):
            # Seeded per sample (see samplers.py); fork_rng leaves the worker's own stream alone.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(key.seed)
                return self._get(key.index, key.position)
        return self._get(int(key))

    def _get(self, index: int, position: int | None = None) -> dict:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} is out of range for a dataset of {len(self)} samples")
        index %= len(self)
        position = index if position is None else position
        failed: list[int] = []
        for _ in range(self.max_retries + 1):
            sample = self.samples[index]
            # A file that failed before in this process fails again: skip it without reading it.
            if index not in self._bad:
                try:
                    clips = self.load(sample)
                    skipped = [(self.samples[i].path, self._bad[i]) for i in failed]
                    return {"clips": clips, "label": sample.label, "index": index, "position": position,
                            "num_skipped": len(failed), "skipped": skipped}
                except (DecodeError, ShortVideoError) as e:
                    self._report(index, sample, e)
            failed.append(index)
            self.num_skipped += 1
            index = self._replacement(exclude=set(failed))
        last = failed[-1]
        raise UnreadableDataError(
            f"{len(failed)} samples in a row could not be read (the last: {self.samples[last].path!r}: "
            f"{self._bad[last]}). The data is mostly unreadable; check the paths and files."
        )

    def _report(self, index: int, sample: Sample, error: Exception) -> None:
        reason = error.reason if isinstance(error, DecodeError) else str(error)
        self._bad[index] = reason
        # Debug only: each worker process meets the file anew every epoch; SkippedFiles names it once.
        logger.debug("Skipping %s (%s); replacing it with another sample", sample.path, reason)

    def _replacement(self, exclude: set[int]) -> int:
        # Drawn from the per-sample seeded RNG, so the replacement (and the whole item) depends
        # only on the sample key; a draw hitting an index that already failed for this item is redrawn.
        for _ in range(10):
            if self.sample_weights is not None:
                index = int(torch.multinomial(torch.from_numpy(self.sample_weights), 1))
            else:
                index = int(torch.randint(len(self), ()))
            if index not in exclude:
                break
        return index


def collate_items(items: Sequence[Mapping]) -> dict:
    """A batch of dataset items: tensors stacked as DataLoader does, ``skipped`` pairs concatenated."""
    skipped = [pair for item in items for pair in item.get("skipped", ())]
    batch = default_collate([{key: value for key, value in item.items() if key != "skipped"} for item in items])
    return {**batch, "skipped": skipped}


class SkippedFiles:
    """The distinct files that could not be read, with the reason: a file met in every epoch, by
    several workers or ranks, or listed twice, is named in the log and counted once."""

    def __init__(self, reasons: Mapping[str, str] | None = None):
        self.reasons: dict[str, str] = dict(reasons or {})

    def __len__(self) -> int:
        return len(self.reasons)

    def add(self, skipped: Iterable[Sequence[str]], report: bool = True) -> list[str]:
        """Record (path, reason) pairs; logs (when ``report``) and returns the paths not seen before."""
        new = []
        for path, reason in skipped:
            if path not in self.reasons:
                self.reasons[path] = reason
                new.append(path)
                if report:
                    logger.warning("Skipped unreadable file %s (%s); other samples replace it (named once, "
                                   "%d distinct so far)", path, reason, len(self.reasons))
        return new


class VideoDataset(ClipDataset):
    """Clips of videos from file lists and/or class folders, decoded with PyAV or decord."""

    def __init__(
        self,
        sources: Sequence[Source],
        transform: ClipTransform,
        clip_sampler: ClipSampler,
        decoder: str = "pyav",
        decoder_threads: int = 1,
        weights: Sequence[float] | None = None,
        max_retries: int = 20,
    ):
        super().__init__(sources, transform, weights, max_retries)
        check_decoder(decoder)
        self.clip_sampler = clip_sampler
        self.decoder = decoder
        self.decoder_threads = decoder_threads

    def load(self, sample: Sample) -> torch.Tensor:
        with open_video(sample.path, self.decoder, self.decoder_threads) as video:
            try:
                indices = self.clip_sampler(video.num_frames, video.fps)
            except ShortVideoError:
                raise
            except ValueError as e:
                raise DecodeError(sample.path, str(e)) from e
            frames = video.get_frames(indices.reshape(-1).tolist())
        frames = frames.reshape(*indices.shape, *frames.shape[1:])  # [clips, T, H, W, 3]
        # Each clip gets its own crop; its views stay together (segment-major).
        return torch.cat([self.transform(clip_frames) for clip_frames in frames])


class ImageDataset(ClipDataset):
    """Images from an ImageFolder tree or a file list, each returned as a one-frame clip."""

    def load(self, sample: Sample) -> torch.Tensor:
        return self.transform(read_image(sample.path))
