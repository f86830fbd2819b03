"""Video decoders behind one interface, and image reading.

``open_video(path, decoder)`` returns a :class:`VideoReader` with ``num_frames``, ``fps`` and
``get_frames(indices) -> uint8 array [T, H, W, 3]`` (RGB). Two backends:

* ``"pyav"``: PyAV (FFmpeg); always available, seeks to the key frame before each requested
  frame and decodes forward, so sparse clips from long videos stay cheap.
* ``"decord"``: decord, imported lazily (it is an optional dependency).

Both number frames the same way (by presentation order of the stream's packets), so the same
indices give the same frames. Every failure to read a file (missing, empty, truncated, not a
video) is raised as :class:`DecodeError`, which the datasets catch to skip the sample.
"""

from __future__ import annotations

import abc
import bisect
import os
from typing import Sequence

import numpy as np

DECODERS = ("pyav", "decord")


class DecodeError(RuntimeError):
    """A file could not be read as a sample: it is missing, empty, truncated or undecodable."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"cannot read {path!r}: {reason}")
        self.path = path
        self.reason = reason


class VideoReader(abc.ABC):
    """An open video: its length, frame rate, and random access to frames by index."""

    path: str
    num_frames: int
    fps: float

    @abc.abstractmethod
    def get_frames(self, indices: Sequence[int]) -> np.ndarray:
        """Frames at ``indices`` (any order, repeats allowed) as uint8 RGB ``[T, H, W, 3]``."""

    def close(self) -> None:
        pass

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _check_indices(self, indices: Sequence[int]) -> list[int]:
        indices = [int(i) for i in indices]
        if not indices:
            raise ValueError("get_frames needs at least one frame index.")
        bad = [i for i in indices if not 0 <= i < self.num_frames]
        if bad:
            raise ValueError(
                f"Frame indices {bad[:5]} are outside [0, {self.num_frames}) for {self.path!r}."
            )
        return indices


class PyAVReader(VideoReader):
    def __init__(self, path: str, num_threads: int = 1):
        import av

        self.path = path
        try:
            self._container = av.open(path)
        except Exception as e:  # PyAV raises a family of FFmpeg errors; all mean "not readable".
            raise DecodeError(path, f"PyAV cannot open it ({e})") from e
        try:
            if not self._container.streams.video:
                raise DecodeError(path, "it has no video stream")
            self._stream = self._container.streams.video[0]
            self._stream.thread_type = "AUTO"
            self._stream.codec_context.thread_count = num_threads
            self._index_packets()
            self.fps = self._frame_rate()
        except DecodeError:
            self.close()
            raise
        except Exception as e:
            self.close()
            raise DecodeError(path, f"PyAV cannot read its packets ({e})") from e

    def _index_packets(self) -> None:
        # Demuxing (no decoding) gives every frame's timestamp: frame i is the i-th in
        # presentation order, which is also how decord numbers frames.
        frame_pts, keyframe_pts = [], []
        for packet in self._container.demux(self._stream):
            pts = packet.pts if packet.pts is not None else packet.dts
            if pts is None or packet.size == 0:
                continue
            frame_pts.append(pts)
            if packet.is_keyframe:
                keyframe_pts.append(pts)
        if not frame_pts:
            raise DecodeError(self.path, "its video stream has no frames")
        self._frame_pts = sorted(frame_pts)
        self._keyframe_pts = sorted(keyframe_pts) or [self._frame_pts[0]]
        self.num_frames = len(self._frame_pts)

    def _frame_rate(self) -> float:
        rate = self._stream.average_rate or self._stream.guessed_rate
        if rate:
            return float(rate)
        span = (self._frame_pts[-1] - self._frame_pts[0]) * float(self._stream.time_base)
        return (self.num_frames - 1) / span if span > 0 else 0.0

    def get_frames(self, indices: Sequence[int]) -> np.ndarray:
        indices = self._check_indices(indices)
        try:
            decoded = self._decode(sorted(set(indices)))
        except DecodeError:
            raise
        except Exception as e:
            raise DecodeError(self.path, f"PyAV failed while decoding ({e})") from e
        return np.stack([decoded[i] for i in indices])

    def _decode(self, targets: list[int]) -> dict[int, np.ndarray]:
        container, stream = self._container, self._stream
        decoded: dict[int, np.ndarray] = {}
        frames = None  # the running decode iterator
        current = None  # the last frame it produced
        for index in targets:
            target = self._frame_pts[index]
            keyframe = self._keyframe_pts[max(bisect.bisect_right(self._keyframe_pts, target) - 1, 0)]
            # Seek when nothing is decoding yet, or when a key frame lies between the current
            # position and the target (decoding up to it would be wasted work).
            if frames is None or (current is not None and current.pts is not None and keyframe > current.pts):
                container.seek(keyframe, stream=stream, backward=True, any_frame=False)
                frames = container.decode(stream)
                current = None
            # The first frame at or after the target: exact for well-formed files, and still a
            # sensible frame when a timestamp is missing from the decoder's output.
            while current is None or current.pts is None or current.pts < target:
                frame = next(frames, None)
                if frame is None:
                    break
                current = frame
            if current is None:
                raise DecodeError(self.path, f"no frame could be decoded at or after frame {index}")
            decoded[index] = current.to_ndarray(format="rgb24")
        return decoded

    def close(self) -> None:
        container = getattr(self, "_container", None)
        if container is not None:
            container.close()
            self._container = None


class DecordReader(VideoReader):
    def __init__(self, path: str, num_threads: int = 1):
        decord = import_decord()
        self.path = path
        try:
            self._reader = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=num_threads)
            self.num_frames = len(self._reader)
            self.fps = float(self._reader.get_avg_fps())
        except Exception as e:  # decord raises DECORDError / RuntimeError for unreadable files.
            raise DecodeError(path, f"decord cannot open it ({e})") from e
        if self.num_frames == 0:
            raise DecodeError(path, "its video stream has no frames")

    def get_frames(self, indices: Sequence[int]) -> np.ndarray:
        indices = self._check_indices(indices)
        try:
            return self._reader.get_batch(indices).asnumpy()
        except Exception as e:
            raise DecodeError(self.path, f"decord failed while decoding ({e})") from e

    def close(self) -> None:
        self._reader = None


def import_decord():
    try:
        import decord
    except ImportError as e:
        raise ImportError(
            "decoder='decord' needs the decord package: `pip install decord` (or `pip install "
            "vjm[video]`), or choose decoder='pyav'."
        ) from e
    return decord


def check_decoder(decoder: str) -> None:
    """Fail at start, not in a worker, when the decoder is unknown or not installed."""
    if decoder not in DECODERS:
        raise ValueError(f"Unknown video decoder {decoder!r}; choose one of {DECODERS}.")
    if decoder == "decord":
        import_decord()
    else:
        try:
            import av  # noqa: F401
        except ImportError as e:
            raise ImportError("decoder='pyav' needs PyAV: `pip install av`.") from e


def _check_file(path: str) -> None:
    if not os.path.exists(path):
        raise DecodeError(path, "file not found")
    if not os.path.isfile(path):
        raise DecodeError(path, "not a regular file")
    if os.path.getsize(path) == 0:
        raise DecodeError(path, "file is empty")


def open_video(path: str, decoder: str = "pyav", num_threads: int = 1) -> VideoReader:
    """Open ``path`` with the named decoder; raises :class:`DecodeError` if it is not readable.

    ``num_threads``: decoding threads per video (0 lets the library choose). Keep 1 when several
    DataLoader workers already use the cores.
    """
    if decoder not in DECODERS:
        raise ValueError(f"Unknown video decoder {decoder!r}; choose one of {DECODERS}.")
    path = os.fspath(path)
    _check_file(path)
    if decoder == "pyav":
        return PyAVReader(path, num_threads)
    return DecordReader(path, num_threads)


def read_image(path: str) -> np.ndarray:
    """An image file as a one-frame uint8 RGB array ``[1, H, W, 3]``."""
    from PIL import Image

    path = os.fspath(path)
    _check_file(path)
    try:
        with Image.open(path) as image:
            array = np.array(image.convert("RGB"))
    except Exception as e:  # PIL raises OSError / UnidentifiedImageError / SyntaxError ...
        raise DecodeError(path, f"not a readable image ({e})") from e
    return array[None]
