import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from data_helpers import toy_dataset
from vjm.data.decoders import open_video
from vjm.data.sources import read_file_list
from vjm.data.toy import ToyScene, digit_pools, ensure_toy_dataset, main

PARAMS = dict(num_train=6, num_val=3, frames=8, size=32)


def digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*")) if p.is_file()
    }


def test_generation_is_deterministic_for_a_seed(tmp_path):
    first = Path(ensure_toy_dataset(tmp_path / "a", seed=3, **PARAMS)["root"])
    second = Path(ensure_toy_dataset(tmp_path / "b", seed=3, **PARAMS)["root"])
    other = Path(ensure_toy_dataset(tmp_path / "c", seed=4, **PARAMS)["root"])
    files = digest(first)
    assert len([f for f in files if f.endswith(".mp4")]) == 9
    assert len([f for f in files if f.endswith(".png")]) == 9
    assert files == digest(second)  # byte for byte
    other_files = digest(other)
    videos = [f for f in files if f.endswith(".mp4")]
    assert all(other_files[f] != files[f] for f in videos)  # another seed, other clips


def test_cached_dataset_is_reused(tmp_path):
    paths = ensure_toy_dataset(tmp_path, seed=0, **PARAMS)
    clip = Path(paths["root"]) / "videos" / "train" / "000000.mp4"
    stamp = clip.stat().st_mtime_ns
    assert ensure_toy_dataset(tmp_path, seed=0, **PARAMS) == paths
    assert clip.stat().st_mtime_ns == stamp
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folders left


def test_lists_label_the_same_videos_for_both_tasks():
    toy = toy_dataset()
    assert toy["num_classes"] == {"digit": 10, "direction": 8}
    for split, count in (("train", 24), ("val", 8)):
        digit = read_file_list(toy[split]["digit"])
        direction = read_file_list(toy[split]["direction"])
        assert len(digit) == len(direction) == count
        assert [s.path for s in digit] == [s.path for s in direction]
        assert {s.label for s in digit} <= set(range(10)) and {s.label for s in direction} <= set(range(8))
        assert len({s.label for s in direction}) > 3  # labels are drawn, not constant
        with open_video(digit[0].path, "pyav") as video:
            assert video.num_frames == 16
            assert video.get_frames([0]).shape == (1, 32, 32, 3)
        images = read_file_list(toy[f"image_{split}"]["digit"])
        assert len(images) == count and all(Path(s.path).parent.name == str(s.label) for s in images)


def circular_centroid(weights: np.ndarray) -> np.ndarray:
    """Centroid (y, x) of a pattern on a torus."""
    size = weights.shape[0]
    angles = 2 * np.pi * np.arange(size) / size
    centre = []
    for axis in (1, 0):  # rows then columns
        profile = weights.sum(axis=axis)
        centre.append(np.angle((profile * np.exp(1j * angles)).sum()) % (2 * np.pi) * size / (2 * np.pi))
    return np.array(centre)


@pytest.mark.parametrize("direction", range(8))
def test_digit_moves_several_pixels_in_the_labelled_direction(direction):
    pools = digit_pools()
    rng = np.random.default_rng(direction)
    scene = ToyScene.random(rng, pools["train"][5][0], direction, size=64, frames=16)
    first, last = (np.abs(scene.frame(t).astype(float) - scene.background * 255).sum(-1) for t in (0, 15))
    moved = (circular_centroid(last) - circular_centroid(first) + 32) % 64 - 32  # (dy, dx), wrapped
    assert np.hypot(*moved) > 15  # several pixels across the clip
    angle = np.degrees(np.arctan2(-moved[0], moved[1])) % 360  # counter-clockwise from "right"
    assert abs((angle - 45 * direction + 180) % 360 - 180) < 10


def test_digit_colour_stands_out_from_the_background():
    pools = digit_pools()
    for seed in range(20):
        scene = ToyScene.random(np.random.default_rng(seed), pools["val"][seed % 10][0], 0, size=32, frames=2)
        luma = np.array([0.299, 0.587, 0.114])
        assert abs(scene.colour @ luma - scene.background.mean(axis=(0, 1)) @ luma) >= 0.35


def test_train_and_val_use_different_handwriting():
    pools = digit_pools()
    for digit in range(10):
        train, val = pools["train"][digit], pools["val"][digit]
        assert len(train) > 2 * len(val) > 0
        assert not any((train == v).all(axis=(1, 2)).any() for v in val)


def test_cli_writes_the_dataset_and_prints_its_lists(tmp_path, capsys):
    main(["--out", str(tmp_path), "--num-train", "2", "--num-val", "2", "--frames", "4", "--size", "16"])
    paths = json.loads(capsys.readouterr().out)
    assert Path(paths["train"]["direction"]).is_file() and Path(paths["image_val"]["digit"]).is_file()
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path), "--size", "33"])
    assert "size must be even" in capsys.readouterr().err
