"""The DataLoader collate_fn that stacks clips and draws their masks.

A sample's masks depend on the run's seed, the epoch, the mask generator's place in the list and
the sample's position in the epoch's order, nothing else: not on the worker that builds the batch,
on a resume, nor on how many processes share the global batch. Each sample draws from a generator
seeded by a hash of those; what a batch shares (multiblock's box shape) is drawn from one seeded
by the global batch's positions. The equal token count a batch needs is the smallest over the
whole global batch: every process draws the (cheap) dense masks of all the global batch's samples,
keeps the smallest counts, and cuts only its own samples down to them. So N processes at a global
batch of B draw exactly the masks one process draws at B.
"""

from __future__ import annotations

import hashlib
import struct
from typing import Mapping, Sequence

import torch
from torch import Tensor

from vjm.data.samplers import global_batch_positions
from vjm.masks.base import MaskGenerator, subsample_sorted
from vjm.masks.grid import is_int

_SAMPLE_KEYS = ("clips", "label", "index", "position", "num_skipped")


_BATCH, _SAMPLE = 0, 1  # what a seed is for: a batch's shared draw, or one sample's masks


def mask_seed(seed: int, epoch: int, stream: int, purpose: int, positions: Sequence[int]) -> int:
    """A 63-bit seed that depends on every argument and on nothing else."""
    values = (seed, epoch, stream, purpose, len(positions), *positions)
    digest = hashlib.blake2b(struct.pack(f"<{len(values)}q", *values), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


class MaskCollator:
    """Collates samples {"clips": [K, C, T, H, W], "label", "index", "position", "num_skipped"} into a batch.

    The batch holds "clip" [B*K, C, T, H, W] (a sample's K clips next to each other), "label"
    [B*K], "index" [B], "position" [B], "num_skipped" (their sum), "skipped" (the (path, reason)
    pairs of the files they replaced, concatenated), and "masks": one (context, target) pair of
    index tensors [B*K, ...] per generator, every clip masked independently ("masks" is left out
    when there are no generators: the collator then only stacks the batch).

    ``global_batch_size``: samples in a step's batch over all processes (the per-process batch
    size x processes, the sampler's training layout: vjm.data.samplers.global_batch_positions).
    The token counts are then equal over the global batch. None: the samples given are the whole
    batch.

    Call ``set_epoch`` before each epoch's DataLoader iterator is created: workers receive a copy
    of the collator when the iterator starts (so with ``persistent_workers=True`` the epoch must be
    set before the first iterator and would not change afterwards; prefer non-persistent workers).
    """

    def __init__(self, generators: Sequence[MaskGenerator], seed: int = 0, global_batch_size: int | None = None):
        if isinstance(generators, MaskGenerator) or not isinstance(generators, Sequence):
            raise ValueError(f"generators must be a list of MaskGenerator, got {type(generators).__name__}")
        for i, generator in enumerate(generators):
            if not isinstance(generator, MaskGenerator):
                raise ValueError(f"generators[{i}] must be a MaskGenerator, got {type(generator).__name__}")
        self.generators = list(generators)
        self.seed = self._check_int("seed", seed)
        self.epoch = 0
        if global_batch_size is not None and (not is_int(global_batch_size) or global_batch_size < 1):
            raise ValueError(f"global_batch_size must be a positive integer or None, got {global_batch_size!r}")
        self.global_batch_size = global_batch_size

    @staticmethod
    def _check_int(name: str, value) -> int:
        if not is_int(value) or not -(2**63) <= value < 2**63:
            raise ValueError(f"{name} must be a 64-bit integer, got {value!r}")
        return int(value)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = self._check_int("epoch", epoch)

    def state_dict(self) -> dict:
        return {"seed": self.seed, "epoch": self.epoch}

    def load_state_dict(self, state: Mapping) -> None:
        missing = {"seed", "epoch"} - set(state)
        if missing:
            raise ValueError(f"mask collator state lacks {sorted(missing)}; expected keys 'seed' and 'epoch'")
        self.seed = self._check_int("seed", state["seed"])
        self.epoch = self._check_int("epoch", state["epoch"])

    def __call__(self, samples: Sequence[Mapping]) -> dict:
        clips = self._stack_clips(samples)
        clips_per_sample = clips.shape[1]
        positions = [int(sample["position"]) for sample in samples]
        members, own = self._global_batch(positions)
        masks = [self._masks(stream, generator, members, own, clips_per_sample)
                 for stream, generator in enumerate(self.generators)]
        labels = torch.tensor([int(sample["label"]) for sample in samples], dtype=torch.long)
        batch = {
            "clip": clips.flatten(0, 1),
            "label": labels.repeat_interleave(clips_per_sample),
            "index": torch.tensor([int(sample["index"]) for sample in samples], dtype=torch.long),
            "position": torch.tensor(positions, dtype=torch.long),
            "num_skipped": sum(int(sample["num_skipped"]) for sample in samples),
            "skipped": [pair for sample in samples for pair in sample.get("skipped", ())],
        }
        if self.generators:  # an objective without masks gets a batch without the key
            batch["masks"] = masks
        return batch

    def _global_batch(self, positions: list[int]) -> tuple[list[int], list[int]]:
        """(the positions of the global batch, where the given samples sit in it)."""
        if self.global_batch_size is None:
            return positions, list(range(len(positions)))
        members = global_batch_positions(positions[0], self.global_batch_size)
        strays = [p for p in positions if p not in members]
        if strays:
            raise ValueError(f"samples at positions {strays} are not in the global batch of positions {members.start}.."
                             f"{members.stop - 1} that position {positions[0]} belongs to: global_batch_size="
                             f"{self.global_batch_size} must be the loader's batch size x processes, with the "
                             "training sampler's layout (drop_last)")
        return list(members), [p - members.start for p in positions]

    def _masks(self, stream: int, generator: MaskGenerator, members: list[int], own: list[int],
               clips_per_sample: int) -> tuple[Tensor, Tensor]:
        """One generator's (context, target) index tensors for the samples at ``own`` of the global batch."""
        shared = generator.draw_shared(self._rng(stream, _BATCH, members))
        rngs = [self._rng(stream, _SAMPLE, [position]) for position in members]
        dense = [generator.sample_dense(clips_per_sample, rng, shared) for rng in rngs]
        num_context, num_target = generator.common_counts(torch.cat([c for c, _ in dense]),
                                                          torch.cat([t for _, t in dense]))
        context = [subsample_sorted(dense[i][0], num_context, rngs[i]) for i in own]
        target = [subsample_sorted(dense[i][1], num_target, rngs[i]) for i in own]
        return torch.cat(context), torch.cat(target)

    def _rng(self, stream: int, purpose: int, positions: Sequence[int]) -> torch.Generator:
        return torch.Generator().manual_seed(mask_seed(self.seed, self.epoch, stream, purpose, positions))

    @staticmethod
    def _stack_clips(samples: Sequence[Mapping]) -> Tensor:
        """Check the samples and stack their clips into [B, K, C, T, H, W]."""
        if not isinstance(samples, Sequence) or len(samples) == 0:
            raise ValueError("MaskCollator needs a non-empty list of samples")
        for i, sample in enumerate(samples):
            if not isinstance(sample, Mapping):
                kind = type(sample).__name__
                raise ValueError(f"sample {i} must be a dict with keys {list(_SAMPLE_KEYS)}, got {kind}")
            missing = [key for key in _SAMPLE_KEYS if key not in sample]
            if missing:
                raise ValueError(f"sample {i} lacks {missing}; a sample needs {list(_SAMPLE_KEYS)}")
            for key in ("label", "index", "position", "num_skipped"):
                value = sample[key]
                if isinstance(value, Tensor) and value.numel() == 1 and not value.is_floating_point():
                    value = value.item()
                if not is_int(value):
                    raise ValueError(f"sample {i}: {key!r} must be an integer, got {value!r}")
            clips = sample["clips"]
            if not isinstance(clips, Tensor) or clips.dim() != 5:
                shape = tuple(clips.shape) if isinstance(clips, Tensor) else type(clips).__name__
                raise ValueError(f"sample {i}: 'clips' must be a tensor [K, C, T, H, W], got {shape}")
            if clips.shape != samples[0]["clips"].shape:
                raise ValueError(
                    f"sample {i}: clips of shape {tuple(clips.shape)} differ from sample 0's "
                    f"{tuple(samples[0]['clips'].shape)}; every sample must have the same clip count and size"
                )
        return torch.stack([sample["clips"] for sample in samples])
