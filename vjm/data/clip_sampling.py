"""Which frames make a clip.

A clip is ``frames_per_clip`` frames taken every ``frame_step`` frames, or every
``video_fps / fps`` frames when a target frame rate is given (rounded to the nearest frame).
Training draws each clip's start uniformly at random; evaluation takes ``num_segments`` starts
evenly spaced over the video (the centre when there is one). A video shorter than one clip is
either padded by repeating its last frame or rejected with :class:`ShortVideoError`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

SHORT_VIDEO_POLICIES = ("pad", "skip")


class ShortVideoError(ValueError):
    """The video has fewer frames than one clip spans and the policy is ``short_video="skip"``."""


@dataclass(frozen=True)
class ClipSampler:
    frames_per_clip: int = 16
    frame_step: int = 4
    fps: float | None = None
    num_clips: int = 1
    num_segments: int = 1
    training: bool = True
    short_video: str = "pad"

    def __post_init__(self):
        for name in ("frames_per_clip", "frame_step", "num_clips", "num_segments"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"ClipSampler: {name} must be a positive integer, got {value!r}.")
        if self.fps is not None and not self.fps > 0:
            raise ValueError(f"ClipSampler: fps must be positive (or None to use frame_step), got {self.fps!r}.")
        if self.short_video not in SHORT_VIDEO_POLICIES:
            raise ValueError(
                f"ClipSampler: short_video must be one of {SHORT_VIDEO_POLICIES}, got {self.short_video!r}."
            )

    @property
    def clips_per_video(self) -> int:
        return self.num_clips if self.training else self.num_segments

    def step(self, video_fps: float) -> float:
        """Frames between consecutive clip frames in this video."""
        if self.fps is None:
            return float(self.frame_step)
        if not video_fps > 0:
            raise ValueError("the video's frame rate is unknown, so a target fps cannot be used")
        return video_fps / self.fps

    def offsets(self, video_fps: float) -> np.ndarray:
        """Frame offsets of a clip relative to its first frame."""
        return np.floor(np.arange(self.frames_per_clip) * self.step(video_fps) + 0.5).astype(np.int64)

    def __call__(self, num_frames: int, video_fps: float = 0.0, generator: torch.Generator | None = None) -> np.ndarray:
        """Frame indices ``[clips_per_video, frames_per_clip]`` for a video of ``num_frames`` frames.

        Random starts come from ``generator`` (or torch's global RNG, which the loader seeds).
        """
        if num_frames < 1:
            raise ValueError(f"a video needs at least one frame, got num_frames={num_frames}")
        offsets = self.offsets(video_fps)
        span = int(offsets[-1]) + 1
        free = num_frames - span  # how far a clip's start can move
        if free < 0:
            if self.short_video == "skip":
                raise ShortVideoError(f"{num_frames} frames is shorter than one clip ({span} frames)")
            starts = np.zeros(self.clips_per_video, dtype=np.int64)
        elif self.training:
            starts = torch.randint(0, free + 1, (self.num_clips,), generator=generator).numpy()
        elif self.num_segments == 1:
            starts = np.array([free // 2])
        else:
            starts = np.floor(np.linspace(0, free, self.num_segments) + 0.5).astype(np.int64)
        # Padding: frames past the end repeat the last frame.
        return np.minimum(starts[:, None] + offsets[None, :], num_frames - 1)
