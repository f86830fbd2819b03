"""Helpers shared by the data tests (tests/test_data_*.py): small real media files and one toy set."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

import av
import numpy as np
from PIL import Image

from vjm.data.toy import ensure_toy_dataset, write_mp4


def marker_frames(num_frames: int, height: int = 48, width: int = 64, seed: int = 0) -> np.ndarray:
    """Textured frames whose top band's brightness encodes the frame index (index * 4)."""
    rng = np.random.default_rng(seed)
    frames = (rng.random((num_frames, height, width, 3)) * 255).astype(np.uint8)
    for t in range(num_frames):
        frames[t, :16] = min(4 * t, 255)
    return frames


def frame_index_from_marker(frame: np.ndarray) -> int:
    return int(round(float(frame[4:12].mean()) / 4))


def write_video(path, frames: np.ndarray, fps: int = 10, gop: int = 8, b_frames: int = 2) -> Path:
    """An H.264 mp4 with several key frames and B-frames, to exercise seeking and reordering."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.options = {"crf": "12", "preset": "fast", "g": str(gop), "bf": str(b_frames), "threads": "1"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return Path(path)


def write_ramp_video(path, num_frames: int, height: int = 40, width: int = 56, fps: int = 10) -> Path:
    """Uniform grey frames whose value is 8 * frame index: a clip's mean tells which frames it holds."""
    frames = np.stack([np.full((height, width, 3), min(8 * t, 255), np.uint8) for t in range(num_frames)])
    write_mp4(path, frames, fps)
    return Path(path)


def write_image(path, height: int = 40, width: int = 50, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray((rng.random((height, width, 3)) * 255).astype(np.uint8)).save(path)
    return Path(path)


def write_bad_files(folder: Path, good_file: Path) -> dict[str, Path]:
    """One file of each kind of damage a dataset must survive."""
    folder.mkdir(parents=True, exist_ok=True)
    data = good_file.read_bytes()
    files = {
        "missing": folder / "missing.mp4",
        "empty": folder / "empty.mp4",
        "truncated": folder / "truncated.mp4",
        "garbage": folder / "garbage.mp4",
    }
    files["empty"].write_bytes(b"")
    files["truncated"].write_bytes(data[: len(data) // 3])
    files["garbage"].write_bytes(np.random.default_rng(0).bytes(4096))
    return files


def write_list(path, rows, separator: str = " ") -> Path:
    Path(path).write_text("".join(f"{p}{separator}{label}\n" for p, label in rows))
    return Path(path)


@functools.lru_cache(maxsize=None)
def toy_dataset(num_train: int = 24, num_val: int = 8, frames: int = 16, size: int = 32, seed: int = 0) -> dict:
    """A small toy dataset, generated once per test session and shared by the test files."""
    root = tempfile.mkdtemp(prefix="vjm-toy-")
    atexit.register(shutil.rmtree, root, True)
    return ensure_toy_dataset(root, num_train=num_train, num_val=num_val, frames=frames, size=size, seed=seed)


class _CreatesFile:
    """Unpickling this object opens (so creates) ``marker``: the smallest pickle that runs code."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def write_malicious_pickle(path, marker: Path, fmt: str = "torch") -> Path:
    """A file that creates ``marker`` when unpickled unsafely: torch.save's zip format, or a bare pickle."""
    import pickle

    import torch

    payload = {"format": "vjm-checkpoint-v2", "tokens": _CreatesFile(marker), "exploit": _CreatesFile(marker)}
    if fmt == "torch":
        torch.save(payload, path)
    else:
        Path(path).write_bytes(pickle.dumps(payload, protocol=2))
    assert not marker.exists()
    return Path(path)
