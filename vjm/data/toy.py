"""The toy dataset: moving handwritten digits, written as real H.264 mp4 files and V-JEPA lists.

Each clip shows one digit from scikit-learn's digits set (shipped with scikit-learn, nothing is
downloaded) moving over a static textured background in one of 8 directions at a random speed.
Two tasks label the same clips:

* ``digit`` (0-9): appearance, the role K400 / IN-1K play.
* ``direction`` (0-7, counter-clockwise from "right" in 45 degree steps): motion, like SSv2.

To keep the tasks honest, colours and sizes are random and independent of the labels (the mean
colour does not give the digit away), and the digit moves on a torus (leaving one edge it comes
back at the opposite one): its position in any single frame is uniform whatever the direction,
so the direction can only be read from motion. Digit instances are split between train and val,
so val measures generalisation to unseen handwriting.

An image variant (single frames of static digits, ``digit`` task) serves the image objectives,
laid out both as lists and as an ImageFolder tree.

Generation is deterministic for a seed and cached under ``root`` in a folder named by the
parameters; ``ensure_toy_dataset`` returns the list paths. CLI::

    python -m vjm.data.toy --out DIR [--num-train 512 --num-val 128 --frames 16 --size 64 --seed 0]
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

TOY_FORMAT_VERSION = 1
TASKS = ("digit", "direction")
NUM_CLASSES = {"digit": 10, "direction": 8}
SPLITS = ("train", "val")
MANIFEST = "manifest.json"

# Scene ranges, as fractions of the frame size.
DIGIT_SIZE = (0.34, 0.48)
DISPLACEMENT = (0.3, 0.5)  # distance travelled over the whole clip
MIN_LUMA_CONTRAST = 0.35


def _luma(rgb: np.ndarray) -> float:
    return float(rgb @ np.array([0.299, 0.587, 0.114]))


def _resize(array: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(array.astype(np.float32)).resize((size, size), Image.BILINEAR))


def _textured_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A random base colour with smooth blotches and a fine grating: float [H, W, 3] in [0, 1]."""
    base = rng.uniform(0.15, 0.85, size=3)
    blotches = np.stack([_resize(rng.normal(size=(5, 5)), size) for _ in range(3)], axis=-1)
    y, x = np.mgrid[0:size, 0:size] / size
    angle, frequency, phase = rng.uniform(0, np.pi), rng.uniform(6, 14), rng.uniform(0, 2 * np.pi)
    grating = np.sin(2 * np.pi * frequency * (x * np.cos(angle) + y * np.sin(angle)) + phase)
    return np.clip(base + 0.08 * blotches + 0.06 * grating[..., None], 0.0, 1.0)


@dataclass
class ToyScene:
    """One clip's content: a static background and a coloured digit sprite moving on a torus."""

    background: np.ndarray  # float [S, S, 3]
    alpha: np.ndarray  # float [S, S], the sprite at the origin of the canvas
    colour: np.ndarray  # float [3]
    start: np.ndarray  # (y, x) position of the sprite's origin at frame 0
    velocity: np.ndarray  # (dy, dx) pixels per frame

    @classmethod
    def random(cls, rng: np.random.Generator, digit: np.ndarray, direction: int, size: int, frames: int) -> "ToyScene":
        background = _textured_background(rng, size)
        while True:  # a digit colour that stands out from the background
            colour = rng.uniform(0.0, 1.0, size=3)
            if abs(_luma(colour) - _luma(background.mean(axis=(0, 1)))) >= MIN_LUMA_CONTRAST:
                break
        digit_size = int(round(rng.uniform(*DIGIT_SIZE) * size))
        alpha = np.zeros((size, size))
        alpha[:digit_size, :digit_size] = np.clip(_resize(digit / 16.0, digit_size) * 1.4, 0.0, 1.0)
        angle = direction * np.pi / 4  # counter-clockwise from "right"; image y points down
        unit = np.array([-np.sin(angle), np.cos(angle)])
        speed = rng.uniform(*DISPLACEMENT) * size / max(frames - 1, 1)
        start = rng.uniform(0, size, size=2)
        return cls(background, alpha, colour, start, unit * speed)

    def position(self, t: int) -> np.ndarray:
        return self.start + t * self.velocity

    def frame(self, t: int) -> np.ndarray:
        """Frame ``t`` as uint8 [S, S, 3]."""
        shift = np.round(self.position(t)).astype(int)
        alpha = np.roll(self.alpha, tuple(shift), axis=(0, 1))[..., None]
        image = self.background * (1 - alpha) + self.colour * alpha
        return np.round(image * 255).astype(np.uint8)

    def frames(self, count: int) -> np.ndarray:
        return np.stack([self.frame(t) for t in range(count)])


@functools.lru_cache(maxsize=1)
def digit_pools() -> dict[str, dict[int, np.ndarray]]:
    """Digit images by split and class: every 4th instance is held out for val."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    pools: dict[str, dict[int, np.ndarray]] = {}
    for split, keep in (("train", lambda i: i % 4 != 0), ("val", lambda i: i % 4 == 0)):
        chosen = [i for i in range(len(digits.target)) if keep(i)]
        pools[split] = {
            c: digits.images[[i for i in chosen if digits.target[i] == c]] for c in range(10)
        }
    return pools


def write_mp4(path: str | os.PathLike, frames: np.ndarray, fps: int) -> None:
    """uint8 RGB frames [T, H, W, 3] -> H.264 mp4 (yuv420p, so H and W must be even)."""
    import av

    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        raise ValueError(f"H.264 (yuv420p) needs even frame sizes, got {width}x{height}.")
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        # One thread and fixed settings: the same frames always give the same bytes. x264's macroblock
        # tree rate control (mbtree) does not: with it, one encode in a hundred of the same frames
        # differed (PyAV 18), more often on a busy machine.
        stream.options = {"crf": "18", "preset": "fast", "threads": "1", "x264-params": "mbtree=0"}
        for frame in frames:
            # Converted here, single-threaded (the encoder's own conversion uses swscale's threads).
            yuv = av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(format="yuv420p", threads=1)
            for packet in stream.encode(yuv):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def write_list(path: Path, rows: list[tuple[str, int]]) -> None:
    path.write_text("".join(f"{p} {label}\n" for p, label in rows))


def _check_params(num_train: int, num_val: int, frames: int, size: int, seed: int, fps: int) -> None:
    for name, value, low in (("num_train", num_train, 1), ("num_val", num_val, 1), ("frames", frames, 2),
                             ("size", size, 16), ("seed", seed, 0), ("fps", fps, 1)):
        if not isinstance(value, int) or value < low:
            raise ValueError(f"toy dataset: {name} must be an integer >= {low}, got {value!r}.")
    if size % 2:
        raise ValueError(f"toy dataset: size must be even (H.264 with yuv420p), got {size}.")


def dataset_name(num_train: int, num_val: int, frames: int, size: int, seed: int, fps: int) -> str:
    return f"toy_v{TOY_FORMAT_VERSION}_n{num_train}-{num_val}_t{frames}_s{size}_fps{fps}_seed{seed}"


def _draw_scene(pool: dict[int, np.ndarray], key: list[int], size: int, frames: int) -> tuple[ToyScene, int, int]:
    """A scene and its (digit, direction) labels; ``key`` seeds it, so an item does not depend on
    how many others are generated."""
    rng = np.random.default_rng(key)
    digit_class, direction = int(rng.integers(10)), int(rng.integers(8))
    instances = pool[digit_class]
    digit = instances[rng.integers(len(instances))]
    return ToyScene.random(rng, digit, direction, size, frames), digit_class, direction


def _generate(out: Path, num_train: int, num_val: int, frames: int, size: int, seed: int, fps: int) -> None:
    from PIL import Image

    pools = digit_pools()
    total, done, started = 2 * (num_train + num_val), 0, time.monotonic()
    for split_id, (split, count) in enumerate(zip(SPLITS, (num_train, num_val))):
        video_rows: dict[str, list] = {task: [] for task in TASKS}
        image_rows = []
        (out / "videos" / split).mkdir(parents=True)
        for digit_class in range(NUM_CLASSES["digit"]):  # every class, so folder labels match lists
            (out / "images" / split / str(digit_class)).mkdir(parents=True)
        for index in range(count):
            scene, digit_class, direction = _draw_scene(pools[split], [seed, split_id, 0, index], size, frames)
            video = f"videos/{split}/{index:06d}.mp4"
            write_mp4(out / video, scene.frames(frames), fps)
            video_rows["digit"].append((video, digit_class))
            video_rows["direction"].append((video, direction))

            scene, digit_class, _ = _draw_scene(pools[split], [seed, split_id, 1, index], size, 1)
            image = f"images/{split}/{digit_class}/{index:06d}.png"
            Image.fromarray(scene.frame(0)).save(out / image)
            image_rows.append((image, digit_class))

            done += 2
            if done % 200 < 2 or done == total:
                elapsed = time.monotonic() - started
                logger.info("Toy dataset: %d/%d files, %.0f/s, ETA %.0fs", done, total, done / elapsed,
                            (total - done) * elapsed / done)
        for task in TASKS:
            write_list(out / f"{split}_{task}.txt", video_rows[task])
        write_list(out / f"image_{split}_digit.txt", image_rows)


def _paths(root: Path) -> dict:
    paths = {split: {task: str(root / f"{split}_{task}.txt") for task in TASKS} for split in SPLITS}
    for split in SPLITS:
        paths[f"image_{split}"] = {"digit": str(root / f"image_{split}_digit.txt")}
        paths[f"image_{split}_folder"] = str(root / "images" / split)
    paths["root"] = str(root)
    paths["num_classes"] = dict(NUM_CLASSES)
    return paths


def ensure_toy_dataset(
    root: str | os.PathLike,
    num_train: int = 512,
    num_val: int = 128,
    frames: int = 16,
    size: int = 64,
    seed: int = 0,
    fps: int = 8,
) -> dict:
    """Generate the toy dataset under ``root`` unless already cached; return the list paths.

    Returns ``{"train": {"digit": list, "direction": list}, "val": {...}, "image_train":
    {"digit": list}, "image_val": {...}, "image_train_folder": dir, "image_val_folder": dir,
    "root": dir, "num_classes": {"digit": 10, "direction": 8}}``. The cache folder is named by
    the parameters; it is written to a temporary folder and renamed into place, so concurrent
    callers (several ranks) and interrupted runs never see a partial dataset.
    """
    _check_params(num_train, num_val, frames, size, seed, fps)
    params = dict(num_train=num_train, num_val=num_val, frames=frames, size=size, seed=seed, fps=fps,
                  version=TOY_FORMAT_VERSION)
    root = Path(root)
    final = root / dataset_name(num_train, num_val, frames, size, seed, fps)
    manifest = final / MANIFEST
    if manifest.is_file():
        if json.loads(manifest.read_text()).get("params") != params:
            raise ValueError(f"{final} holds a toy dataset with other parameters; remove it to regenerate.")
        logger.info("Toy dataset cached at %s", final)
        return _paths(final)

    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=root))
    try:
        logger.info("Generating the toy dataset in %s", final)
        _generate(tmp, num_train, num_val, frames, size, seed, fps)
        (tmp / MANIFEST).write_text(json.dumps({"params": params}, indent=1))
        tmp.chmod(0o755)  # mkdtemp makes it private
        try:
            os.rename(tmp, final)
        except OSError as e:
            if not manifest.is_file():  # not a concurrent writer that finished first
                raise FileExistsError(
                    f"{final} exists but is not a complete toy dataset (no {MANIFEST}); remove it and retry."
                ) from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return _paths(final)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m vjm.data.toy", description="Write the toy moving-digits dataset (mp4 + lists)."
    )
    parser.add_argument("--out", required=True, help="folder to hold the dataset (a sub-folder per parameter set)")
    parser.add_argument("--num-train", type=int, default=512, help="training clips (and images)")
    parser.add_argument("--num-val", type=int, default=128, help="validation clips (and images)")
    parser.add_argument("--frames", type=int, default=16, help="frames per video")
    parser.add_argument("--size", type=int, default=64, help="frame height and width in pixels (even)")
    parser.add_argument("--fps", type=int, default=8, help="frame rate written in the mp4 files")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        paths = ensure_toy_dataset(args.out, args.num_train, args.num_val, args.frames, args.size, args.seed, args.fps)
    except ValueError as e:
        parser.error(str(e))
    print(json.dumps(paths, indent=2))


if __name__ == "__main__":
    main()
