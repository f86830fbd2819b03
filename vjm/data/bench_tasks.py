"""The quality benchmark's generated tasks: one appearance task and two motion tasks with headroom.

The toy dataset (``vjm.data.toy``) cannot tell a good encoder from a random one: a random-init
VideoMamba reads its direction task at 98% and its digit task as well as a trained one. These
three tasks are built so that a random encoder is far from the top and a learned one has room to
show. Every clip is real pixels where they can be had: handwritten digits from scikit-learn's
digits set (1797 real 8x8 scans) over crops of the two real photos scikit-learn ships
(``load_sample_images``), both installed with scikit-learn, nothing downloaded. Each task has its
own clips (nuisances are chosen per task, and none is a label of another):

* ``digit`` (10 classes, appearance): which digit is shown. One frame holds the answer, but the
  digit is drawn at a random position, size (0.5-0.8 of the frame), aspect, tilt and colour and
  drifts and turns a little, over a real photo.
* ``speed`` (3 classes, motion): how fast the digit moves on screen: slow, medium, fast, with well
  separated ranges (``SPEED_RANGES``, px / frame) in a random direction. The background moves too,
  in its own random direction at a speed drawn uniformly over all three classes' span, so the
  amount of motion in the frame, or in any region the digit does not cover, says nothing about the
  class. The digit moves on a torus (it wraps around the frame edges), so its position in any one
  frame is uniform whatever the speed, and nothing is blurred: one frame says nothing about the label.
* ``orbit`` (2 classes, motion, needs the order of the frames): does the digit circle
  counter-clockwise (0) or clockwise (1) about a fixed point. The digit does not spin (its tilt is
  fixed): each pair of frames shows it shifted in some direction, uniform whatever the class; only
  how that direction turns from one pair of frames to the next tells the class. Every scene is
  parametrised about the clip's middle frame (position and orbit phase there; orbit velocities of
  either sign with symmetric ranges), so a clockwise clip played backwards is exactly a
  counter-clockwise clip of the same distribution (``BenchScene.reversed``). Hence no statistic
  that ignores the order of the frames (one frame, the set of frames, the amount of frame-to-frame
  change) can tell the classes apart. The digit wraps around the frame edges, so its position in
  any one frame is uniform.

  Version history: in version 1 the background of every task panned and the speed task asked for
  the digit's speed *relative* to the background; with 512-1024 clips per task no model trained with
  the labels (VideoMamba or a small CNN) read any task above its random-init control on held-out
  clips. In version 2 every background was still: a random-init encoder then read the speed task
  at 94% (a small CNN: 99.7%), no headroom (docs/QUALITY.md).

  A digit *spinning* in place (the first choice for this task) was dropped: a frozen random-init
  VideoMamba-Ti read its sense at 97% with the attentive probe, because one tubelet (two frames)
  already shows the strokes turning.

Labels are balanced (clip ``i`` has label ``i % num_classes``); everything else is drawn from a
generator seeded by ``(seed, task, split, index)``, so a clip does not depend on how many others
are made. Validation clips use held-out handwriting (``vjm.data.toy.digit_pools``: every 4th
instance) and held-out backgrounds (``PHOTO_COLUMNS``: disjoint column ranges of each photo).
Background crops are randomly zoomed, flipped, turned, recoloured (channel order, contrast,
brightness) and redrawn when too flat to show the camera's motion (``MIN_TEXTURE``). Sizes and
speeds are given at 64 px and scale with the frame size.

Generation is deterministic for a seed and cached under ``root`` in a folder named by its
parameters (like the toy dataset). Layout::

    ROOT/bench_v1_n2048-1024_t16_s64_fps8_seed0/
        manifest.json
        train_digit.txt train_speed.txt train_orbit.txt     # V-JEPA lists: "path label"
        val_digit.txt   val_speed.txt   val_orbit.txt       # (paths relative to the list)
        videos/{task}/{split}/000000.mp4                       # H.264, yuv420p

CLI::

    python -m vjm.data.bench_tasks --out DIR [--num-train 2048 --num-val 1024 --frames 16 --size 64 --seed 0]
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import math
import multiprocessing
import os
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .toy import digit_pools, write_list, write_mp4

logger = logging.getLogger(__name__)

BENCH_FORMAT_VERSION = 3  # 3: speed on screen over a background moving at random; orbit and digit on still ones
TASKS = ("digit", "speed", "orbit")
NUM_CLASSES = {"digit": 10, "speed": 3, "orbit": 2}
TASK_KINDS = {"digit": "appearance", "speed": "motion", "orbit": "motion"}
CLASS_NAMES = {
    "digit": tuple(str(d) for d in range(10)),
    "speed": ("slow", "medium", "fast"),
    "orbit": ("counter-clockwise", "clockwise"),
}
SPLITS = ("train", "val")
MANIFEST = "manifest.json"
DEFAULT_ROOT = "data/bench"

# Scene ranges. Lengths and speeds are in pixels (per frame) at REFERENCE_SIZE and scale with the
# frame size; angles are in degrees.
REFERENCE_SIZE = 64
PHOTO_ZOOM = (0.6, 1.6)  # photo pixels per frame pixel
PHOTO_CONTRAST = (0.35, 0.7)  # the photo's deviations from its mean are scaled by this
PHOTO_BRIGHTNESS = (-0.12, 0.12)
MIN_LUMA_CONTRAST = 0.35  # between the digit's colour and the background's mean
# Columns (fractions of the width) of each photo by split: disjoint, with a gap. China: the temple
# and trees for training, trees, lake and hills for val; flower: each split has part of the dahlia.
PHOTO_COLUMNS = {
    "china.jpg": {"train": (0.0, 0.65), "val": (0.7, 1.0)},
    "flower.jpg": {"train": (0.0, 0.45), "val": (0.5, 1.0)},
}
# Flat crops (sky, the flower photo's blurred leaves) would hide the camera's motion: a crop is
# drawn again, up to TEXTURE_TRIES times, until its mean absolute luma step between neighbouring
# pixels reaches MIN_TEXTURE (the most textured draw is kept otherwise).
MIN_TEXTURE = 0.03
TEXTURE_TRIES = 20
# The 8x8 digit, with a blank border of one cell, is upsampled (bicubic) once to a sprite whose digit
# cell is SPRITE_CELL pixels wide, then resampled every frame. The border keeps the ink's edges smooth.
SPRITE_CELL = 32

DIGIT_SPRITE = (0.5, 0.8)  # side of the digit's 8x8 cell, as a fraction of the frame (digit task)
DIGIT_DRIFT = 0.5  # max drift speed, px / frame (digit task)
DIGIT_TILT = 15.0  # max tilt at the middle frame
DIGIT_SPIN = 0.5  # max turning speed, degrees / frame (digit task)
SPEED_SPRITE = (0.3, 0.45)
SPEED_RANGES = ((0.4, 0.8), (1.3, 1.9), (2.6, 3.6))  # slow / medium / fast, px / frame, in a random direction
SPEED_TILT = 25.0
ORBIT_SPRITE = (0.3, 0.45)
ORBIT_RADIUS = (8.0, 16.0)
ORBIT_SPEED = (8.0, 14.0)  # degrees / frame; positive = counter-clockwise on screen
ORBIT_TILT = 25.0
ASPECT = (0.8, 1.25)  # height / width stretch of the digit

LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


# ----------------------------------------------------------------------------------------------
# Sources: real photos and real handwriting


@functools.lru_cache(maxsize=1)
def photo_regions() -> dict[str, list[np.ndarray]]:
    """Float [H, W, 3] regions in [0, 1] of scikit-learn's two sample photos, by split (``PHOTO_COLUMNS``)."""
    from sklearn.datasets import load_sample_images

    photos = load_sample_images()
    images = {os.path.basename(name): image for name, image in zip(photos.filenames, photos.images)}
    if sorted(images) != sorted(PHOTO_COLUMNS):
        raise RuntimeError(f"scikit-learn's sample images are {sorted(images)}, expected {sorted(PHOTO_COLUMNS)}")
    regions: dict[str, list[np.ndarray]] = {split: [] for split in SPLITS}
    for name in sorted(PHOTO_COLUMNS):
        image = images[name]
        for split, (left, right) in PHOTO_COLUMNS[name].items():
            columns = slice(int(left * image.shape[1]), int(right * image.shape[1]))
            regions[split].append(np.ascontiguousarray(image[:, columns], dtype=np.float32) / 255.0)
    return regions


def texture(image: np.ndarray) -> float:
    """Mean absolute luma step between neighbouring pixels of a float [H, W, 3] image."""
    luma = image @ LUMA
    return float(np.abs(np.diff(luma, axis=0)).mean() + np.abs(np.diff(luma, axis=1)).mean()) / 2


@functools.lru_cache(maxsize=None)
def _sprite(digit_bytes: bytes) -> np.ndarray:
    """An 8x8 digit (0-16) -> a smooth, centred alpha mask in [0, 1], 1.25 * SPRITE_CELL + 4 pixels wide."""
    from PIL import Image

    digit = np.frombuffer(digit_bytes, dtype=np.float64).reshape(8, 8).astype(np.float32) / 16.0
    side = SPRITE_CELL * 10 // 8
    alpha = np.asarray(Image.fromarray(np.pad(digit, 1)).resize((side, side), Image.BICUBIC))
    alpha = np.clip(alpha * 1.4 - 0.1, 0.0, 1.0)
    return np.pad(alpha, 2)  # a zero border: sampling outside the sprite gives 0


def digit_sprite(digit: np.ndarray) -> np.ndarray:
    return _sprite(np.ascontiguousarray(digit, dtype=np.float64).tobytes())


# ----------------------------------------------------------------------------------------------
# Scenes


def _rotation_yx(degrees: float) -> np.ndarray:
    """Counter-clockwise *on screen* (y points down) rotation of (y, x) vectors."""
    a = math.radians(degrees)
    return np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])


@functools.lru_cache(maxsize=8)
def _grid(size: int) -> np.ndarray:
    return np.stack(np.mgrid[0:size, 0:size], axis=0).reshape(2, -1).astype(np.float64)  # (y, x) x S*S


def _bilinear_crop(canvas: np.ndarray, oy: float, ox: float, size: int) -> np.ndarray:
    iy, ix = int(math.floor(oy)), int(math.floor(ox))
    fy, fx = oy - iy, ox - ix
    a = canvas[iy:iy + size + 1, ix:ix + size + 1]
    rows = a[:-1] * (1 - fy) + a[1:] * fy
    return rows[:, :-1] * (1 - fx) + rows[:, 1:] * fx


@dataclass
class BenchScene:
    """One clip: a photo background panned by the camera and a coloured digit sprite.

    Every time-dependent quantity is given at the middle frame ``tc = (frames - 1) / 2``:
    background crop offset ``offset - (t - tc) * pan`` (so the background's content moves by ``+pan``
    on screen); sprite centre ``centre + (t - tc) * velocity + orbit_radius * (-sin a, cos a)`` with
    ``a = orbit_phase + (t - tc) * orbit_speed``; sprite angle ``angle + (t - tc) * spin``. Angles in
    degrees, counter-clockwise on screen (y points down). ``wrap``: the sprite lives on a torus.
    """

    canvas: np.ndarray  # float32 [C, C, 3], C >= size + the pan's travel
    offset: np.ndarray  # (y, x) of the crop's top-left corner in the canvas at the middle frame
    pan: np.ndarray  # (dy, dx) px / frame
    sprite: np.ndarray  # float32 alpha [R, R]
    sprite_side: float  # frame pixels covered by the sprite's side
    aspect: float  # height / width stretch
    colour: np.ndarray  # float [3]
    centre: np.ndarray  # (y, x)
    velocity: np.ndarray  # (dy, dx) px / frame
    angle: float
    spin: float  # degrees / frame
    wrap: bool
    size: int
    num_frames: int
    orbit_radius: float = 0.0
    orbit_phase: float = 0.0
    orbit_speed: float = 0.0  # degrees / frame

    def reversed(self) -> "BenchScene":
        """The scene whose frames are this one's in reverse order."""
        return replace(self, pan=-self.pan, velocity=-self.velocity, spin=-self.spin, orbit_speed=-self.orbit_speed)

    def position(self, t: int) -> np.ndarray:
        """(y, x) of the sprite's centre in frame ``t`` (before wrapping)."""
        tc = (self.num_frames - 1) / 2
        a = math.radians(self.orbit_phase + (t - tc) * self.orbit_speed)
        return self.centre + (t - tc) * self.velocity + self.orbit_radius * np.array([-math.sin(a), math.cos(a)])

    def alpha(self, t: int) -> np.ndarray:
        from scipy.ndimage import map_coordinates

        tc = (self.num_frames - 1) / 2
        delta = _grid(self.size) - self.position(t)[:, None]
        if self.wrap:
            delta = (delta + self.size / 2) % self.size - self.size / 2
        scale = np.diag([SPRITE_CELL / (self.sprite_side * math.sqrt(self.aspect)),
                         SPRITE_CELL * math.sqrt(self.aspect) / self.sprite_side])
        inverse = scale @ _rotation_yx(-(self.angle + (t - tc) * self.spin))
        coords = inverse @ delta + (self.sprite.shape[0] - 1) / 2
        return map_coordinates(self.sprite, coords, order=1, mode="constant", cval=0.0).reshape(self.size, self.size)

    def background(self, t: int) -> np.ndarray:
        tc = (self.num_frames - 1) / 2
        oy, ox = self.offset - (t - tc) * self.pan
        return _bilinear_crop(self.canvas, oy, ox, self.size)

    def frame(self, t: int) -> np.ndarray:
        """Frame ``t`` as uint8 [S, S, 3]."""
        alpha = self.alpha(t)[..., None]
        image = self.background(t) * (1 - alpha) + self.colour * alpha
        return np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)

    def frames(self) -> np.ndarray:
        return np.stack([self.frame(t) for t in range(self.num_frames)])


def _unit(rng: np.random.Generator) -> np.ndarray:
    angle = rng.uniform(0, 2 * np.pi)
    return np.array([math.sin(angle), math.cos(angle)])


def _photo_canvas(rng: np.random.Generator, regions: list[np.ndarray], side: int) -> np.ndarray:
    """A random square crop of a random photo region, resized to ``side`` pixels, with random
    flips, quarter turns, channel order, contrast and brightness: float32 [side, side, 3]."""
    from PIL import Image

    best, best_texture = None, -1.0
    for _ in range(TEXTURE_TRIES):
        region = regions[rng.integers(len(regions))]
        region = np.rot90(region, int(rng.integers(4)))
        if rng.random() < 0.5:
            region = region[:, ::-1]
        zoom = min(rng.uniform(*PHOTO_ZOOM), min(region.shape[:2]) / side)
        source = min(max(int(round(side * zoom)), 2), *region.shape[:2])
        y0 = int(rng.integers(region.shape[0] - source + 1))
        x0 = int(rng.integers(region.shape[1] - source + 1))
        crop = np.round(region[y0:y0 + source, x0:x0 + source] * 255).astype(np.uint8)
        canvas = np.asarray(Image.fromarray(crop).resize((side, side), Image.BILINEAR), dtype=np.float32) / 255.0
        detail = texture(canvas)
        if detail > best_texture:
            best, best_texture = canvas, detail
        if detail >= MIN_TEXTURE:
            break
    canvas = best[..., rng.permutation(3)]
    mean = canvas.mean(axis=(0, 1))
    canvas = mean + rng.uniform(*PHOTO_CONTRAST) * (canvas - mean) + rng.uniform(*PHOTO_BRIGHTNESS)
    return np.clip(canvas, 0.0, 1.0).astype(np.float32)


def _colour(rng: np.random.Generator, canvas: np.ndarray) -> np.ndarray:
    """A digit colour whose luma differs from the background's mean by MIN_LUMA_CONTRAST."""
    background = float(canvas.mean(axis=(0, 1)) @ LUMA)
    while True:
        colour = rng.uniform(0.0, 1.0, size=3)
        if abs(float(colour @ LUMA) - background) >= MIN_LUMA_CONTRAST:
            return colour


def random_scene(rng: np.random.Generator, task: str, label: int, digit: np.ndarray, regions: list[np.ndarray],
                 size: int, frames: int) -> BenchScene:
    """A scene of ``task`` with ``label`` (the digit's class is the label only for the digit task)."""
    k = size / REFERENCE_SIZE
    tc = (frames - 1) / 2
    pan = np.zeros(2)
    if task == "speed":  # the background moves too, at a speed that says nothing about the class
        pan = _unit(rng) * rng.uniform(SPEED_RANGES[0][0], SPEED_RANGES[-1][1]) * k
    margin = math.ceil(float(np.abs(pan).max()) * tc) + 2  # the crop's travel either side of the middle
    canvas = _photo_canvas(rng, regions, size + 2 * margin)
    offset = np.array([margin, margin], dtype=np.float64)
    colour = _colour(rng, canvas)
    aspect = float(math.exp(rng.uniform(*np.log(ASPECT))))
    if task == "digit":
        side = rng.uniform(*DIGIT_SPRITE) * size
        velocity = _unit(rng) * rng.uniform(0, DIGIT_DRIFT) * k
        angle, spin, wrap = rng.uniform(-DIGIT_TILT, DIGIT_TILT), rng.uniform(-DIGIT_SPIN, DIGIT_SPIN), False
        # Keep the digit (its ink can span the whole cell) inside the frame over the whole clip.
        tilt = math.radians(min(abs(angle) + abs(spin) * tc, 45.0))
        stretch = max(math.sqrt(aspect), 1 / math.sqrt(aspect))
        reach = 0.5 * side * stretch * (math.cos(tilt) + math.sin(tilt)) + np.abs(velocity) * tc
        low, high = reach, size - reach
        centre = np.where(low < high, rng.uniform(np.minimum(low, high), np.maximum(low, high)), size / 2)
    elif task == "speed":
        side = rng.uniform(*SPEED_SPRITE) * size
        velocity = _unit(rng) * rng.uniform(*SPEED_RANGES[label]) * k
        centre = rng.uniform(0, size, size=2)
        angle, spin, wrap = rng.uniform(-SPEED_TILT, SPEED_TILT), 0.0, True
    elif task == "orbit":
        side = rng.uniform(*ORBIT_SPRITE) * size
        velocity = np.zeros(2)  # the orbit's centre stays put
        centre = rng.uniform(0, size, size=2)
        angle, spin, wrap = rng.uniform(-ORBIT_TILT, ORBIT_TILT), 0.0, True
        orbit = dict(orbit_radius=rng.uniform(*ORBIT_RADIUS) * k, orbit_phase=rng.uniform(0, 360),
                     orbit_speed=rng.uniform(*ORBIT_SPEED) * (1 if label == 0 else -1))
    else:
        raise ValueError(f"unknown bench task {task!r}; the tasks are {TASKS}")
    return BenchScene(canvas=canvas, offset=offset, pan=pan, sprite=digit_sprite(digit), sprite_side=float(side),
                      aspect=aspect, colour=colour, centre=np.asarray(centre, dtype=np.float64),
                      velocity=np.asarray(velocity, dtype=np.float64), angle=float(angle), spin=float(spin),
                      wrap=wrap, size=size, num_frames=frames, **(orbit if task == "orbit" else {}))


def label_of(task: str, index: int) -> int:
    """Balanced labels: clip ``index`` of a task has label ``index % num_classes``."""
    return index % NUM_CLASSES[task]


def make_scene(task: str, split: str, index: int, seed: int = 0, size: int = 64,
               frames: int = 16) -> tuple[BenchScene, int]:
    """Clip ``index`` of ``task`` / ``split`` for ``seed``, and its label (no file is written)."""
    if task not in TASKS:
        raise ValueError(f"unknown bench task {task!r}; the tasks are {TASKS}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; the splits are {SPLITS}")
    rng = np.random.default_rng([seed, TASKS.index(task), SPLITS.index(split), index])
    label = label_of(task, index)
    pool = digit_pools()[split]
    digit_class = label if task == "digit" else int(rng.integers(10))
    digit = pool[digit_class][rng.integers(len(pool[digit_class]))]
    return random_scene(rng, task, label, digit, photo_regions()[split], size, frames), label


# ----------------------------------------------------------------------------------------------
# Files


def _check_params(num_train: int, num_val: int, frames: int, size: int, seed: int, fps: int) -> None:
    for name, value, low in (("num_train", num_train, 1), ("num_val", num_val, 1), ("frames", frames, 2),
                             ("size", size, 16), ("seed", seed, 0), ("fps", fps, 1)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"bench tasks: {name} must be an integer >= {low}, got {value!r}.")
    if size % 2:
        raise ValueError(f"bench tasks: size must be even (H.264 with yuv420p), got {size}.")


def dataset_name(num_train: int, num_val: int, frames: int, size: int, seed: int, fps: int) -> str:
    return f"bench_v{BENCH_FORMAT_VERSION}_n{num_train}-{num_val}_t{frames}_s{size}_fps{fps}_seed{seed}"


def video_path(task: str, split: str, index: int) -> str:
    return f"videos/{task}/{split}/{index:06d}.mp4"


def _write_videos(out: str, items: list[tuple[str, str, int]], seed: int, size: int, frames: int, fps: int) -> int:
    """Render and write ``items`` (task, split, index); runs in worker processes."""
    for task, split, index in items:
        scene, _ = make_scene(task, split, index, seed, size, frames)
        write_mp4(Path(out) / video_path(task, split, index), scene.frames(), fps)
    return len(items)


def _generate(out: Path, num_train: int, num_val: int, frames: int, size: int, seed: int, fps: int,
              workers: int) -> None:
    counts = dict(zip(SPLITS, (num_train, num_val)))
    items = []
    for task in TASKS:
        for split in SPLITS:
            (out / "videos" / task / split).mkdir(parents=True)
            items += [(task, split, index) for index in range(counts[split])]
            write_list(out / f"{split}_{task}.txt",
                       [(video_path(task, split, i), label_of(task, i)) for i in range(counts[split])])
    chunk = 32
    chunks = [items[i:i + chunk] for i in range(0, len(items), chunk)]
    total, done, started = len(items), 0, time.monotonic()

    def progress(count: int) -> None:
        nonlocal done
        previous, done = done, done + count
        if done // 500 != previous // 500 or done == total:
            elapsed = time.monotonic() - started
            logger.info("Bench tasks: %d/%d videos, %.0f/s, ETA %.0fs", done, total, done / elapsed,
                        (total - done) * elapsed / done)

    args = (str(out), seed, size, frames, fps)
    if workers <= 1:
        for c in chunks:
            progress(_write_videos(args[0], c, *args[1:]))
        return
    # "fork" where there is one: "spawn" would need the caller's script to guard its main code. The
    # workers use numpy, scipy, PIL and PyAV only, never torch's thread pools.
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method)) as pool:
        futures = [pool.submit(_write_videos, args[0], c, *args[1:]) for c in chunks]
        for future in futures:
            progress(future.result())


def _paths(root: Path) -> dict:
    paths: dict = {split: {task: str(root / f"{split}_{task}.txt") for task in TASKS} for split in SPLITS}
    paths["root"] = str(root)
    paths["num_classes"] = dict(NUM_CLASSES)
    return paths


def default_workers() -> int:
    return max(1, min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1, 8))


def ensure_bench_tasks(
    root: str | os.PathLike = DEFAULT_ROOT,
    num_train: int = 2048,
    num_val: int = 1024,
    frames: int = 16,
    size: int = 64,
    seed: int = 0,
    fps: int = 8,
    workers: int | None = None,
) -> dict:
    """Generate the benchmark's clips under ``root`` unless already cached; return the list paths.

    Returns ``{"train": {"digit": list, "speed": list, "orbit": list}, "val": {...}, "root": dir,
    "num_classes": NUM_CLASSES}``. ``num_train`` / ``num_val`` clips per task. The cache folder is
    named by the parameters (``dataset_name``); it is written to a temporary folder and renamed into
    place, so concurrent callers and interrupted runs never see a partial dataset. ``workers``
    (processes; default: the usable cores, at most 8) changes the speed, never the files.
    """
    _check_params(num_train, num_val, frames, size, seed, fps)
    workers = default_workers() if workers is None else workers
    if not isinstance(workers, int) or workers < 0:
        raise ValueError(f"bench tasks: workers must be an integer >= 0, got {workers!r}.")
    params = dict(num_train=num_train, num_val=num_val, frames=frames, size=size, seed=seed, fps=fps,
                  version=BENCH_FORMAT_VERSION)
    root = Path(root)
    final = root / dataset_name(num_train, num_val, frames, size, seed, fps)
    manifest = final / MANIFEST
    if manifest.is_file():
        if json.loads(manifest.read_text()).get("params") != params:
            raise ValueError(f"{final} holds bench tasks with other parameters; remove it to regenerate.")
        logger.info("Bench tasks cached at %s", final)
        return _paths(final)

    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=root))
    try:
        logger.info("Generating the bench tasks in %s (%d processes)", final, max(workers, 1))
        started = time.monotonic()
        _generate(tmp, num_train, num_val, frames, size, seed, fps, workers)
        elapsed = time.monotonic() - started
        logger.info("Bench tasks: %d videos in %.1fs", len(TASKS) * (num_train + num_val), elapsed)
        (tmp / MANIFEST).write_text(json.dumps(
            {"params": params, "tasks": {t: {"kind": TASK_KINDS[t], "classes": list(CLASS_NAMES[t])} for t in TASKS}},
            indent=1))
        tmp.chmod(0o755)  # mkdtemp makes it private
        try:
            os.rename(tmp, final)
        except OSError as e:
            if not manifest.is_file():  # not a concurrent writer that finished first
                raise FileExistsError(
                    f"{final} exists but is not a complete bench task set (no {MANIFEST}); remove it and retry."
                ) from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return _paths(final)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m vjm.data.bench_tasks",
        description="Write the quality benchmark's clips (digit, speed, orbit: mp4 + lists).",
    )
    parser.add_argument("--out", default=DEFAULT_ROOT,
                        help=f"folder to hold the clips (a sub-folder per parameter set; default {DEFAULT_ROOT})")
    parser.add_argument("--num-train", type=int, default=2048, help="training clips per task")
    parser.add_argument("--num-val", type=int, default=1024, help="validation clips per task")
    parser.add_argument("--frames", type=int, default=16, help="frames per video")
    parser.add_argument("--size", type=int, default=64, help="frame height and width in pixels (even)")
    parser.add_argument("--fps", type=int, default=8, help="frame rate written in the mp4 files")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=None,
                        help="processes (default: usable cores, at most 8); the files do not depend on it")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        paths = ensure_bench_tasks(args.out, args.num_train, args.num_val, args.frames, args.size, args.seed,
                                   args.fps, args.workers)
    except ValueError as e:
        parser.error(str(e))
    print(json.dumps(paths, indent=2))


if __name__ == "__main__":
    main()
