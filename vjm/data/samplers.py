"""Distributed, resumable sampling and reproducible randomness for data loading.

The sampler fixes one global order per epoch from ``(seed, epoch)`` (a permutation, or draws
weighted by source when datasets are mixed), shares it among the ranks, and can start an epoch at
any batch so a resumed run continues exactly where it stopped.

Training (``drop_last``) cuts the order into global batches of ``batch_size x W`` consecutive
positions and gives rank ``r`` the ``r``-th block of ``batch_size`` of each: the ranks' batches of
a step, concatenated in rank order, are the batch one process would get at the same global batch
size, sample for sample (see :func:`global_batch_positions`). Evaluation (no ``drop_last``) deals
the positions round-robin (``r, r + W, ...``) so that every sample is seen exactly once.

It yields :class:`SampleKey` ``(index, seed, position)``: the seed is derived from
``(seed, epoch, position in the global order)``, and the dataset seeds its clip positions and
augmentations from it. A sample's randomness therefore depends on neither the number of ranks
or workers nor on whether the run was resumed.
"""

from __future__ import annotations

import math
import random
from typing import Iterator, NamedTuple, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler


class SampleKey(NamedTuple):
    index: int
    seed: int
    position: int | None = None  # in the epoch's global order; None: asked for outside one


def derive_seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from a tuple of non-negative integers."""
    state = np.random.SeedSequence([int(p) for p in parts]).generate_state(2, dtype=np.uint64)
    return int(state[0]) & (2**63 - 1)


class ResumableDistributedSampler(Sampler[SampleKey]):
    """Each rank's share of one epoch's global order, resumable at a batch boundary.

    Args:
        dataset_size: number of samples in the dataset.
        num_replicas, rank: the distributed world; every rank must use the same ``seed``.
        shuffle: a new permutation every epoch (evaluation keeps dataset order).
        seed: base seed of the run.
        weights: optional per-sample weights; then each epoch draws ``num_samples`` indices with
            replacement in proportion to them (mixing several lists).
        num_samples: draws per epoch over all ranks (default: ``dataset_size``).
        pad: repeat the start of the order so every rank gets the same number of samples
            (round-robin dealing only); without it every sample is seen exactly once and the
            last ranks may get one sample fewer. Whole global batches need no padding.
        batch_size: the per-rank batch size, the unit of :meth:`set_start`.
        drop_last: yield whole global batches only, each rank its block of each (what a loader
            with ``drop_last=True`` uses), so that :meth:`num_batches` and ``len()`` count exactly
            what the loader will yield, and the same on every rank.
    """

    def __init__(
        self,
        dataset_size: int,
        *,
        num_replicas: int = 1,
        rank: int = 0,
        shuffle: bool = True,
        seed: int = 0,
        weights: Sequence[float] | None = None,
        num_samples: int | None = None,
        pad: bool = True,
        batch_size: int = 1,
        drop_last: bool = False,
    ):
        if dataset_size < 1:
            raise ValueError(f"The dataset is empty (dataset_size={dataset_size}); nothing to sample.")
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"Need 0 <= rank < num_replicas, got rank={rank}, num_replicas={num_replicas}.")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}.")
        if weights is not None and len(weights) != dataset_size:
            raise ValueError(f"Got {len(weights)} sample weights for a dataset of {dataset_size} samples.")
        self.dataset_size = dataset_size
        self.num_replicas = num_replicas
        self.rank = rank
        self.shuffle = shuffle
        self.seed = seed
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.float64)
        self.num_samples_total = num_samples or dataset_size
        self.pad = pad
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.epoch = 0
        self.start_batch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's order; the next iteration starts at its beginning."""
        self.epoch = int(epoch)
        self.start_batch = 0

    def set_start(self, batch_index: int) -> None:
        """Begin the next iteration at batch ``batch_index`` of the current epoch (for resuming)."""
        if not 0 <= batch_index <= self.num_batches():
            raise ValueError(
                f"Cannot start at batch {batch_index}: epoch {self.epoch} has {self.num_batches()} "
                f"batches of {self.batch_size} on rank {self.rank}."
            )
        self.start_batch = int(batch_index)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "start_batch": self.start_batch, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        if state.get("seed", self.seed) != self.seed:
            raise ValueError(f"Sampler state was saved with seed {state['seed']}, this run uses {self.seed}.")
        self.set_epoch(state["epoch"])
        self.set_start(state["start_batch"])

    @property
    def global_batch_size(self) -> int:
        return self.batch_size * self.num_replicas

    def _rank_size(self) -> int:
        if self.drop_last:  # whole global batches, one block of each per rank
            return self.num_samples_total // self.global_batch_size * self.batch_size
        if self.pad:
            return math.ceil(self.num_samples_total / self.num_replicas)
        return len(range(self.rank, self.num_samples_total, self.num_replicas))

    def num_batches(self) -> int:
        """Batches in a full epoch on this rank: whole ones only with drop_last, else with a last partial one."""
        if self.drop_last:
            return self.num_samples_total // self.global_batch_size
        return math.ceil(self._rank_size() / self.batch_size)

    def _epoch_size(self) -> int:
        """Samples this rank yields in a full epoch."""
        return self._rank_size()

    def _rank_positions(self, total: int) -> Sequence[int]:
        """This rank's positions of an order of ``total``, in the order it yields them."""
        if not self.drop_last:
            return range(self.rank, total, self.num_replicas)[: self._epoch_size()]
        first = self.rank * self.batch_size
        return [batch * self.global_batch_size + first + i
                for batch in range(self.num_batches()) for i in range(self.batch_size)]

    def global_order(self) -> torch.Tensor:
        """The epoch's order over all ranks (before padding)."""
        generator = torch.Generator().manual_seed(derive_seed(self.seed, self.epoch))
        if self.weights is not None:
            return torch.multinomial(self.weights, self.num_samples_total, replacement=True, generator=generator)
        if self.shuffle:
            return torch.randperm(self.dataset_size, generator=generator)
        return torch.arange(self.dataset_size)

    def __iter__(self) -> Iterator[SampleKey]:
        order = self.global_order().tolist()
        if self.pad and not self.drop_last:
            total = self._rank_size() * self.num_replicas
            order += (order * math.ceil(total / len(order)))[: total - len(order)]
        positions = self._rank_positions(len(order))[self.start_batch * self.batch_size :]
        for position in positions:
            yield SampleKey(order[position], derive_seed(self.seed, self.epoch, position), position)

    def __len__(self) -> int:
        return max(self._epoch_size() - self.start_batch * self.batch_size, 0)


def global_batch_positions(position: int, global_batch_size: int) -> range:
    """The positions of the global batch that holds ``position`` (training's layout, ``drop_last``)."""
    first = position - position % global_batch_size
    return range(first, first + global_batch_size)


class WorkerSeeder:
    """``worker_init_fn`` seeding torch, numpy and random from (seed, rank, epoch, start, worker).

    Holds the sampler to read the epoch (and resume position) current when workers start; workers
    are started afresh each epoch, so each epoch gets new, reproducible streams. This covers
    randomness outside the dataset (e.g. mask collators running in workers); the dataset itself
    is seeded per sample.
    """

    def __init__(self, seed: int, rank: int, sampler: ResumableDistributedSampler):
        self.seed = seed
        self.rank = rank
        self.sampler = sampler

    def __call__(self, worker_id: int) -> None:
        seed = derive_seed(self.seed, self.rank, self.sampler.epoch, self.sampler.start_batch, worker_id)
        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)
        random.seed(seed)
