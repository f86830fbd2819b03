"""Video and image data: sources, decoders, clip sampling, transforms, datasets and loaders.

The trainer needs two calls::

    dataset = build_dataset(kind="video", paths=[...], frames_per_clip=16, ...)
    loader = build_loader(dataset, batch_size, num_workers, rank, world_size, seed)
    loader.sampler.set_epoch(epoch)        # every epoch
    loader.sampler.set_start(batch_index)  # when resuming mid-epoch

The toy dataset lives in ``vjm.data.toy`` (``ensure_toy_dataset``; ``python -m vjm.data.toy``).
"""

from .builders import build_dataset, build_loader
from .clip_sampling import ClipSampler, ShortVideoError
from .datasets import ClipDataset, ImageDataset, VideoDataset
from .decoders import DecodeError, open_video, read_image
from .samplers import ResumableDistributedSampler, SampleKey
from .transforms import IMAGENET_MEAN, IMAGENET_STD, EvalClipTransform, TrainClipTransform, build_transform

__all__ = [
    "build_dataset", "build_loader", "ClipSampler", "ShortVideoError", "ClipDataset", "ImageDataset",
    "VideoDataset", "DecodeError", "open_video", "read_image", "ResumableDistributedSampler", "SampleKey",
    "IMAGENET_MEAN", "IMAGENET_STD", "EvalClipTransform", "TrainClipTransform", "build_transform",
]
