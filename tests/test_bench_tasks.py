"""The quality benchmark's generated tasks (vjm.data.bench_tasks): files, labels, splits, and that the
motion tasks cannot be read from one frame."""

import hashlib
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from vjm.data import build_dataset
from sklearn.datasets import load_sample_images

from vjm.data.bench_tasks import (
    NUM_CLASSES, PHOTO_COLUMNS, SPEED_RANGES, SPRITE_CELL, TASKS, dataset_name, digit_sprite,
    ensure_bench_tasks, main, make_scene, photo_regions,
)
from vjm.data.decoders import open_video
from vjm.data.sources import read_file_list
from vjm.data.toy import digit_pools

PARAMS = dict(num_train=12, num_val=6, frames=8, size=32, workers=1)


def digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    return ensure_bench_tasks(tmp_path_factory.mktemp("bench"), seed=0, **PARAMS)


def test_generation_is_deterministic_for_a_seed_whatever_the_workers(bench, tmp_path):
    files = digest(Path(bench["root"]))
    assert len([f for f in files if f.endswith(".mp4")]) == 3 * (12 + 6)
    again = ensure_bench_tasks(tmp_path / "a", seed=0, **{**PARAMS, "workers": 2})
    assert digest(Path(again["root"])) == files  # byte for byte, with two processes
    other = digest(Path(ensure_bench_tasks(tmp_path / "b", seed=1, **PARAMS)["root"]))
    assert all(other[f] != files[f] for f in files if f.endswith(".mp4"))  # another seed, other clips


def test_cache_is_reused_and_layout(bench, tmp_path):
    root = Path(bench["root"])
    assert root.name == dataset_name(12, 6, 8, 32, 0, 8)
    assert bench["num_classes"] == NUM_CLASSES and set(NUM_CLASSES) == set(TASKS)
    clip = root / "videos" / "speed" / "train" / "000000.mp4"
    stamp = clip.stat().st_mtime_ns
    assert ensure_bench_tasks(root.parent, seed=0, **PARAMS) == bench
    assert clip.stat().st_mtime_ns == stamp
    assert not [p for p in root.parent.iterdir() if p.name.startswith(".")]  # no temporary folders left
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["params"]["num_train"] == 12 and manifest["tasks"]["speed"]["kind"] == "motion"


def test_labels_are_balanced_and_lists_point_at_videos(bench):
    for split, count in (("train", 12), ("val", 6)):
        for task in TASKS:
            samples = read_file_list(bench[split][task])
            assert len(samples) == count
            assert all(Path(s.path).is_file() and f"/{task}/{split}/" in s.path for s in samples)
            counts = Counter(s.label for s in samples)
            assert set(counts) <= set(range(NUM_CLASSES[task]))
            assert max(counts.values()) - min(counts.get(c, 0) for c in range(NUM_CLASSES[task])) <= 1


def test_videos_decode_to_the_right_shape(bench):
    samples = read_file_list(bench["val"]["orbit"])
    with open_video(samples[0].path, "pyav") as video:
        assert video.num_frames == 8
        frames = video.get_frames(range(8))
    assert frames.shape == (8, 32, 32, 3)
    scene, label = make_scene("orbit", "val", 0, seed=0, size=32, frames=8)
    assert label == samples[0].label
    assert np.abs(frames.astype(float) - scene.frames()).mean() < 8  # the file holds the scene (H.264, crf 18)
    dataset = build_dataset(kind="video", paths=[bench["train"]["speed"]], training=False, frames_per_clip=4,
                            frame_step=2, num_segments=1, num_views=1, crop_size=32, eval_crop="center")
    item = dataset[0]
    assert tuple(item["clips"].shape) == (1, 3, 4, 32, 32) and item["label"] == 0


def test_train_and_val_use_different_handwriting_and_backgrounds():
    pools = digit_pools()
    for digit in range(10):
        assert not any((pools["train"][digit] == v).all(axis=(1, 2)).any() for v in pools["val"][digit])
    regions = photo_regions()
    photos = load_sample_images()
    for i, name in enumerate(sorted(PHOTO_COLUMNS)):  # disjoint column ranges of each photo
        image = photos.images[[Path(f).name for f in photos.filenames].index(name)]
        columns = PHOTO_COLUMNS[name]
        assert columns["train"][1] < columns["val"][0]
        for split in ("train", "val"):
            left, right = (int(x * image.shape[1]) for x in columns[split])
            np.testing.assert_array_equal(regions[split][i] * 255, image[:, left:right])
    # The digit task's val clips show val instances: the sprite is one of the val pool's.
    scene, label = make_scene("digit", "val", 3, seed=0, size=32, frames=4)
    assert any((digit_sprite(d) == scene.sprite).all() for d in pools["val"][label])
    assert not any((digit_sprite(d) == scene.sprite).all() for d in pools["train"][label])


def circular_centroid(weights: np.ndarray) -> np.ndarray:
    """Centroid (y, x) of a pattern on a torus."""
    angles = 2 * np.pi * np.arange(weights.shape[0]) / weights.shape[0]
    return np.array([np.angle((weights.sum(axis=axis) * np.exp(1j * angles)).sum()) % (2 * np.pi)
                     for axis in (1, 0)]) * weights.shape[0] / (2 * np.pi)


def test_orbit_label_is_the_circling_sense_on_screen():
    for index in range(8):
        scene, label = make_scene("orbit", "train", index, seed=0, size=64, frames=16)
        centres = [circular_centroid(scene.alpha(t)) for t in (4, 7, 10)]
        steps = [(b - a + 32) % 64 - 32 for a, b in zip(centres, centres[1:])]  # (dy, dx), wrapped
        (dy1, dx1), (dy2, dx2) = steps
        turn = dx1 * -dy2 - -dy1 * dx2  # cross product with y pointing up: > 0 counter-clockwise
        assert np.sign(turn) == (1 if label == 0 else -1)
        assert np.hypot(dy1, dx1) > 3  # several pixels between the frames


def test_reversed_orbit_clip_is_the_other_class():
    """Played backwards, a clockwise clip is a counter-clockwise one of the same distribution: no
    statistic that ignores frame order tells the classes apart."""
    scene, label = make_scene("orbit", "train", 1, seed=0, size=32, frames=6)
    assert label == 1 and scene.orbit_speed < 0
    backwards = scene.reversed()
    assert backwards.orbit_speed > 0  # counter-clockwise
    np.testing.assert_array_equal(backwards.frames(), scene.frames()[::-1])


def test_speed_is_the_digits_speed_on_screen_whatever_the_background_does():
    pans = []
    for index in range(60):
        scene, label = make_scene("speed", "train", index, seed=0, size=64, frames=16)
        low, high = SPEED_RANGES[label]
        assert low - 1e-9 <= np.hypot(*scene.velocity) <= high + 1e-9
        pans.append((label, np.hypot(*scene.pan)))
    # The background's speed spans all classes' ranges, whatever the class.
    for label in range(3):
        speeds = [p for c, p in pans if c == label]
        assert min(speeds) < SPEED_RANGES[1][0] and max(speeds) > SPEED_RANGES[1][1]


def nearest_centroid_accuracy(features: np.ndarray, labels: np.ndarray) -> float:
    """Train on the first half, score on the second."""
    half = len(labels) // 2
    x = (features - features[:half].mean(0)) / (features[:half].std(0) + 1e-6)
    centroids = np.stack([x[:half][labels[:half] == c].mean(0) for c in np.unique(labels)])
    guess = ((x[half:, None] - centroids[None]) ** 2).sum(-1).argmin(1)
    return float((guess == labels[half:]).mean())


def first_frames(task: str, count: int, frame: int = 0, size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    features, labels = [], []
    for index in range(count):
        scene, label = make_scene(task, "train", index, seed=0, size=size, frames=8)
        image = scene.frame(frame).astype(np.float32)
        features.append(np.concatenate([image.ravel(), image.mean((0, 1)), image.std((0, 1))]))
        labels.append(label)
    return np.array(features), np.array(labels)


@pytest.mark.parametrize("task", ["speed", "orbit"])
def test_motion_label_is_not_in_one_frame(task):
    chance = 1 / NUM_CLASSES[task]
    for frame in (0, 7):
        features, labels = first_frames(task, 360, frame)
        assert nearest_centroid_accuracy(features, labels) < chance + 0.12


def test_the_amount_of_motion_in_the_frame_does_not_tell_the_speed():
    """The background moves at a speed independent of the class, and covers most of the frame."""
    changes, labels = [], []
    for index in range(240):
        scene, label = make_scene("speed", "train", index, seed=0, size=32, frames=9)
        frames = scene.frames().astype(np.float32).mean(-1)
        changes.append(np.abs(frames[4:] - frames[:-4]).mean()); labels.append(label)
    changes, labels = np.array(changes), np.array(labels)
    half = len(labels) // 2
    medians = [np.median(changes[:half][labels[:half] == c]) for c in range(3)]
    order = np.argsort(medians)
    cuts = [(medians[order[0]] + medians[order[1]]) / 2, (medians[order[1]] + medians[order[2]]) / 2]
    guess = order[np.digitize(changes[half:], cuts)]
    assert (guess == labels[half:]).mean() < 1 / 3 + 0.12  # chance is 1/3


def test_whole_digit_is_in_every_frame_of_the_digit_task():
    # The appearance task's answer is in every frame: the digit never leaves the frame.
    for index in range(40):
        scene, _ = make_scene("digit", "val", index, seed=0, size=64, frames=16)
        area = scene.sprite.sum() * (scene.sprite_side / SPRITE_CELL) ** 2  # the sprite's alpha mass in frame pixels
        for t in (0, 15):
            assert abs(scene.alpha(t).sum() / area - 1) < 0.02


def test_cli_writes_the_tasks_and_rejects_bad_sizes(tmp_path, capsys):
    main(["--out", str(tmp_path), "--num-train", "3", "--num-val", "2", "--frames", "4", "--size", "16",
          "--workers", "1"])
    paths = json.loads(capsys.readouterr().out)
    assert all(Path(paths[split][task]).is_file() for split in ("train", "val") for task in TASKS)
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path), "--size", "33"])
    assert "size must be even" in capsys.readouterr().err
