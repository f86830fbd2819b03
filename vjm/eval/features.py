"""Frozen-encoder features: clips -> tokens without autograd, optionally cached for a whole epoch.

A batch of items holds clips B x K x C x T x H x W, K = segments x views (segment-major). The
encoder sees all B*K clips at once and returns tokens B x S x V x N x D. When the clips do not
change between epochs (no augmentation), ``extract_features`` computes them once; with a cache
folder they are stored on disk under a key made of the encoder's weights and the clips' samples
and sampling, so evaluations of two tasks on the same videos (the toy digit and direction tasks)
share them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from vjm.data import build_loader
from vjm.data.datasets import ClipDataset, SkippedFiles

logger = logging.getLogger(__name__)

__all__ = ["CachedFeatures", "autocast", "encode_clips", "encoder_fingerprint", "extract_features"]


def autocast(device: torch.device, dtype: torch.dtype):
    """bf16 autocast on CUDA when asked for; a no-op context in fp32."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


@torch.no_grad()
def encode_clips(encoder: nn.Module, clips: torch.Tensor, num_segments: int, dtype: torch.dtype = torch.float32
                 ) -> torch.Tensor:
    """Clips B x K x C x T x H x W (K = segments x views, segment-major) -> tokens B x S x V x N x D."""
    if clips.dim() != 6:
        raise ValueError(f"expected clips B x K x C x T x H x W (K = segments x views), got {tuple(clips.shape)}")
    b, k = clips.shape[:2]
    if k % num_segments:
        raise ValueError(f"{k} clips per sample is not a multiple of num_segments = {num_segments}")
    with autocast(clips.device, dtype):
        tokens = encoder(clips.flatten(0, 1))
    return tokens.view(b, num_segments, k // num_segments, *tokens.shape[1:])


def encoder_fingerprint(encoder: nn.Module) -> str:
    """A digest of the encoder's weights: equal for equal weights, whatever file they came from."""
    digest = hashlib.sha1()
    for name, tensor in sorted(encoder.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


@dataclass
class CachedFeatures:
    """Tokens of every sample of a dataset (in dataset order) and the sample each came from."""

    tokens: torch.Tensor  # num_samples x S x V x N x D
    index: torch.Tensor  # num_samples: dataset index actually read (a bad file is replaced by another)

    def labels(self, dataset: ClipDataset) -> torch.Tensor:
        return torch.as_tensor(np.asarray(dataset.labels)[self.index.numpy()])


def _cache_key(fingerprint: str, dataset: ClipDataset, sampling: dict, dtype: torch.dtype) -> str:
    digest = hashlib.sha1(json.dumps({"encoder": fingerprint, "sampling": sampling, "dtype": str(dtype),
                                      "samples": [s.path for s in dataset.samples]}).encode())
    return digest.hexdigest()[:20]


def _read_cache(path: Path, num_samples: int, what: str) -> CachedFeatures | None:
    """The features cached at ``path``, or None when there are none or the file is unusable.

    A cache is only a shortcut: a truncated, corrupt or foreign file (or one holding pickled code,
    which ``weights_only`` refuses to run) is discarded with a warning and the features recomputed.
    """
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        tokens, index = state["tokens"], state["index"]
        if not (isinstance(tokens, torch.Tensor) and isinstance(index, torch.Tensor)
                and len(tokens) == len(index) == num_samples):
            raise ValueError(f"it does not hold tokens and indices of {num_samples} samples")
    except Exception as exc:  # whatever is wrong with the file, the remedy is the same: recompute
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        logger.warning("%s: discarding the unusable feature cache %s (%s: %s); computing the features again",
                       what, path, type(exc).__name__, reason)
        return None
    logger.info("%s: read %d cached samples from %s", what, num_samples, path)
    return CachedFeatures(tokens, index)


def extract_features(
    encoder: nn.Module,
    dataset: ClipDataset,
    *,
    num_segments: int,
    batch_size: int,
    num_workers: int,
    device: torch.device,
    dtype: torch.dtype,
    cache_dir: str | os.PathLike | None = None,
    sampling: dict | None = None,
    what: str = "features",
    pin_memory: bool = True,
) -> CachedFeatures:
    """Encode every sample of ``dataset`` once (progress logged), or read them from ``cache_dir``.

    ``sampling`` describes how the dataset makes clips (frames, step, crop...); with the sample
    paths and the encoder's weights it names the cache file, so a stale file is never reused.
    ``pin_memory`` pages the clips in for faster copies when ``device`` is a GPU.
    """
    path = None
    if cache_dir is not None:
        key = _cache_key(encoder_fingerprint(encoder), dataset, sampling or {}, dtype)
        path = Path(cache_dir) / f"{what.replace(' ', '_')}-{key}.pt"
        cached = _read_cache(path, len(dataset), what)
        if cached is not None:
            return cached
    loader = build_loader(dataset, batch_size, num_workers, training=False, drop_last=False,
                          pin_memory=pin_memory and device.type == "cuda")
    tokens, index, done, skipped = [], [], 0, SkippedFiles()
    started = time.monotonic()
    for step, batch in enumerate(loader, start=1):
        clips = batch["clips"].to(device, non_blocking=True)
        tokens.append(encode_clips(encoder, clips, num_segments, dtype).cpu())
        index.append(batch["index"])
        done += clips.shape[0]
        skipped.add(batch["skipped"])
        if step % 10 == 0 or done == len(dataset):
            rate = done / (time.monotonic() - started)
            logger.info("%s: %d/%d samples, %.1f/s, ETA %.0fs", what, done, len(dataset), rate,
                        (len(dataset) - done) / rate)
    if skipped:
        logger.warning("%s: %d unreadable files were replaced by others", what, len(skipped))
    features = CachedFeatures(torch.cat(tokens), torch.cat(index))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        torch.save({"tokens": features.tokens, "index": features.index}, tmp)
        os.replace(tmp, path)
        logger.info("%s: cached at %s", what, path)
    return features
