"""Batches of frozen tokens for a probe's epoch, from the feature cache or through the encoder.

Tokens are B x S x V x N x D (segments, views); ``group_tokens`` shapes them into what one
classification sees.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from vjm.data import build_loader
from vjm.data.datasets import SkippedFiles
from vjm.data.samplers import derive_seed

from .features import CachedFeatures, encode_clips

__all__ = ["TokenSource", "group_tokens"]


def group_tokens(tokens: torch.Tensor, segments: str) -> tuple[torch.Tensor, int]:
    """Tokens B x S x V x N x D -> (B*G x N' x D, G): what one classification sees.

    joint: each view's tokens of all segments together (G = V, N' = S*N); separate: every
    segment and view apart (G = S*V, N' = N).
    """
    b, s, v, n, d = tokens.shape
    if segments == "joint":
        return tokens.transpose(1, 2).reshape(b * v, s * n, d), v
    return tokens.reshape(b * s * v, n, d), s * v


@dataclass
class TokenSource:
    """Batches of (tokens B x S x V x N x D on the device, labels B) for an epoch: from a cache or a loader."""

    encoder: nn.Module
    dataset: Any
    num_segments: int
    batch_size: int
    num_workers: int
    device: torch.device
    dtype: torch.dtype
    seed: int
    training: bool
    pin_memory: bool = True
    positions: np.ndarray | None = None  # only these samples of ``dataset`` (from vjm.eval.data.holdout_split)
    cached: CachedFeatures | None = None  # features of every sample of ``dataset``
    skipped: SkippedFiles = field(default_factory=SkippedFiles)  # unreadable files met, each named once

    def __len__(self) -> int:
        n = len(self.dataset) if self.positions is None else len(self.positions)
        if not self.training:
            return math.ceil(n / self.batch_size)
        return max(1, n // self.batch_size)

    def batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.cached is not None:
            yield from self._cached_batches(epoch)
            return
        dataset = self.dataset if self.positions is None else self.dataset.subset(self.positions)
        loader = build_loader(dataset, self.batch_size, self.num_workers, seed=self.seed,
                              training=self.training, drop_last=self.training and len(dataset) >= self.batch_size,
                              pin_memory=self.pin_memory and self.device.type == "cuda")
        loader.sampler.set_epoch(epoch)
        for batch in loader:
            self.skipped.add(batch["skipped"])
            clips = batch["clips"].to(self.device, non_blocking=True)
            yield encode_clips(self.encoder, clips, self.num_segments, self.dtype), batch["label"].to(self.device)

    def _cached_batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        tokens, labels = self.cached.tokens, self.cached.labels(self.dataset)
        pool = torch.arange(len(labels)) if self.positions is None else torch.as_tensor(self.positions)
        if self.training:  # a new order every epoch, the same after a resume
            generator = torch.Generator().manual_seed(derive_seed(self.seed, epoch))
            order = pool[torch.randperm(len(pool), generator=generator)[: len(self) * self.batch_size]]
        else:
            order = pool
        for start in range(0, len(order), self.batch_size):
            index = order[start:start + self.batch_size]
            yield tokens[index].to(self.device, non_blocking=True), labels[index].to(self.device)
