"""The DataLoader collate_fn that stacks clips and draws their masks.

Masks are drawn from a generator seeded by a hash of (seed, epoch, the batch's sample indices,
the mask generator's position), never from a per-worker counter: the same batch gets the same
masks whichever worker builds it, and a run resumed mid-epoch draws what it would have drawn.
"""

from __future__ import annotations

import hashlib
import struct
from typing import Mapping, Sequence

import torch
from torch import Tensor

from vjm.masks.base import MaskGenerator
from vjm.masks.grid import is_int

_SAMPLE_KEYS = ("clips", "label", "index", "num_skipped")


def mask_seed(seed: int, epoch: int, indices: Sequence[int], stream: int) -> int:
    """A 63-bit seed that depends on every argument and on nothing else."""
    values = (seed, epoch, stream, len(indices), *indices)
    digest = hashlib.blake2b(struct.pack(f"<{len(values)}q", *values), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


class MaskCollator:
    """Collates samples {"clips": [K, C, T, H, W], "label", "index", "num_skipped"} into a batch.

    The batch holds "clip" [B*K, C, T, H, W] (a sample's K clips next to each other), "label"
    [B*K], "index" [B], "num_skipped" (their sum), "skipped" (the (path, reason) pairs of the files
    they replaced, concatenated), and "masks": one (context, target) pair of
    index tensors [B*K, ...] per generator, every clip masked independently ("masks" is left out
    when there are no generators: the collator then only stacks the batch).

    Call ``set_epoch`` before each epoch's DataLoader iterator is created: workers receive a copy
    of the collator when the iterator starts (so with ``persistent_workers=True`` the epoch must be
    set before the first iterator and would not change afterwards; prefer non-persistent workers).
    """

    def __init__(self, generators: Sequence[MaskGenerator], seed: int = 0):
        if isinstance(generators, MaskGenerator) or not isinstance(generators, Sequence):
            raise ValueError(f"generators must be a list of MaskGenerator, got {type(generators).__name__}")
        for i, generator in enumerate(generators):
            if not isinstance(generator, MaskGenerator):
                raise ValueError(f"generators[{i}] must be a MaskGenerator, got {type(generator).__name__}")
        self.generators = list(generators)
        self.seed = self._check_int("seed", seed)
        self.epoch = 0

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
        indices = [int(sample["index"]) for sample in samples]
        masks = []
        for stream, mask_generator in enumerate(self.generators):
            rng = torch.Generator().manual_seed(mask_seed(self.seed, self.epoch, indices, stream))
            masks.append(mask_generator.sample(len(samples) * clips_per_sample, rng))
        labels = torch.tensor([int(sample["label"]) for sample in samples], dtype=torch.long)
        batch = {
            "clip": clips.flatten(0, 1),
            "label": labels.repeat_interleave(clips_per_sample),
            "index": torch.tensor(indices, dtype=torch.long),
            "num_skipped": sum(int(sample["num_skipped"]) for sample in samples),
            "skipped": [pair for sample in samples for pair in sample.get("skipped", ())],
        }
        if self.generators:  # an objective without masks gets a batch without the key
            batch["masks"] = masks
        return batch

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
            for key in ("label", "index", "num_skipped"):
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
