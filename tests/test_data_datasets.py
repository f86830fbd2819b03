import logging

import numpy as np
import pytest
import torch

from data_helpers import toy_dataset, write_bad_files, write_image, write_list, write_ramp_video
from vjm.data import build_dataset, build_loader
from vjm.data.datasets import SkippedFiles
from vjm.data.samplers import SampleKey
from vjm.data.sources import read_file_list
from vjm.data.transforms import IMAGENET_MEAN, IMAGENET_STD

SMALL = dict(frames_per_clip=4, frame_step=2, crop_size=32)


def grey_level(clips: torch.Tensor) -> torch.Tensor:
    """Undo the normalisation of grey clips [K, C, T, H, W] -> per-frame level [K, T] in 0..255."""
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1, 1)
    return ((clips * std + mean) * 255).mean(dim=(1, 3, 4))


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """Two good ramp videos, one 5-frame video, the four kinds of bad files, and lists."""
    root = tmp_path_factory.mktemp("media")
    good = [write_ramp_video(root / f"good{i}.mp4", 30) for i in range(2)]
    short = write_ramp_video(root / "short.mp4", 5)
    bad = write_bad_files(root / "bad", good[0])
    return root, good, short, bad


def test_video_item_has_the_agreed_layout():
    toy = toy_dataset()
    dataset = build_dataset(kind="video", paths=[toy["train"]["direction"]], num_clips=2, **SMALL)
    item = dataset[3]
    assert set(item) == {"clips", "label", "index", "position", "num_skipped", "skipped"} and item["skipped"] == []
    assert item["clips"].shape == (2, 3, 4, 32, 32) and item["clips"].dtype == torch.float32
    assert item["index"] == item["position"] == 3 and item["num_skipped"] == 0
    assert item["label"] == read_file_list(toy["train"]["direction"])[3].label


def test_evaluation_views_are_segment_major(media):
    _, good, _, _ = media
    dataset = build_dataset(
        kind="video", paths=[write_list(good[0].parent / "eval.txt", [(good[0].name, 1)])],
        training=False, num_segments=3, eval_crop="three", num_views=3, **SMALL,
    )
    clips = dataset[0]["clips"]
    assert clips.shape == (9, 3, 4, 32, 32)
    levels = grey_level(clips).view(3, 3, 4)  # [segment, view, frame]
    # Views of one segment hold the same frames; segments move forward through the video.
    torch.testing.assert_close(levels, levels[:, :1].expand(3, 3, 4), atol=1.0, rtol=0)
    frame_indices = (levels[:, 0] / 8).round()
    np.testing.assert_array_equal(frame_indices.numpy(), [[0, 2, 4, 6], [12, 14, 16, 18], [23, 25, 27, 29]])


@pytest.mark.parametrize("decoder", ["pyav", "decord"])
def test_training_clips_come_from_random_positions(media, decoder):
    _, good, _, _ = media
    dataset = build_dataset(kind="video", paths=[write_list(good[0].parent / "one.txt", [(good[0].name, 0)])],
                            decoder=decoder, num_clips=4, **SMALL)
    torch.manual_seed(0)
    firsts = set()
    for _ in range(4):
        levels = grey_level(dataset[0]["clips"]) / 8  # frame indices of the 4 clips
        steps = levels[:, 1:] - levels[:, :-1]
        torch.testing.assert_close(steps, torch.full_like(steps, 2.0), atol=0.2, rtol=0)
        firsts |= set(levels[:, 0].round().int().tolist())
    assert len(firsts) > 4


def test_both_decoders_give_the_same_item():
    paths = [toy_dataset()["train"]["digit"]]
    items = [build_dataset(kind="video", paths=paths, decoder=d, randaugment=True, **SMALL)[SampleKey(1, 1234)]
             for d in ("pyav", "decord")]
    torch.testing.assert_close(items[0]["clips"], items[1]["clips"], rtol=0, atol=0)


def test_bad_files_are_skipped_counted_and_reported(media, caplog):
    root, good, _, bad = media
    rows = [(p.name, 0) for p in good] + [(f"bad/{p.name}", 1) for p in bad.values()]
    dataset = build_dataset(kind="video", paths=[write_list(root / "mixed.txt", rows)], **SMALL)
    bad_indices = set(range(len(good), len(rows)))
    skipped = SkippedFiles()
    with caplog.at_level(logging.WARNING, logger="vjm.data.datasets"):
        items = [dataset[SampleKey(i, seed=i)] for i in range(len(rows))] * 2  # every file met twice
        for item in items:
            skipped.add(item["skipped"])
    for i, item in enumerate(items[:len(rows)]):
        assert item["index"] not in bad_indices and item["label"] == 0
        assert item["num_skipped"] == len(item["skipped"]) >= (1 if i in bad_indices else 0)
        if i not in bad_indices:
            assert item["index"] == i and item["num_skipped"] == 0
    assert sorted(skipped.reasons) == sorted(str(p) for p in bad.values()) and len(skipped) == len(bad)
    logged = caplog.text
    for damage, path in bad.items():
        assert logged.count(f"{path} (") == 1, f"the {damage} file was not named exactly once"
    for reason in ("file not found", "file is empty", "cannot open"):
        assert reason in logged
    assert dataset.num_skipped == sum(item["num_skipped"] for item in items[:len(rows)])


def test_skip_counts_travel_through_loader_workers(media):
    root, good, _, bad = media
    rows = [(p.name, 0) for p in good] * 3 + [(f"bad/{p.name}", 1) for p in bad.values()]
    dataset = build_dataset(kind="video", paths=[write_list(root / "mixed2.txt", rows)], **SMALL)
    loader = build_loader(dataset, batch_size=5, num_workers=2, seed=0, drop_last=False)
    batches = list(loader)
    indices = torch.cat([b["index"] for b in batches])
    assert len(indices) == len(rows) and indices.max() < 6  # only good samples come out
    assert sum(int(b["num_skipped"].sum()) for b in batches) == sum(len(b["skipped"]) for b in batches) >= len(bad)
    skipped = SkippedFiles()
    for batch in batches:
        skipped.add(batch["skipped"])
    assert sorted(skipped.reasons) == sorted(str(p) for p in bad.values())  # distinct, whichever worker met them


def test_all_bad_data_gives_up_with_a_clear_error(media):
    root, _, _, bad = media
    rows = [(f"bad/{p.name}", 0) for name, p in bad.items() if name != "missing"]
    dataset = build_dataset(kind="video", paths=[write_list(root / "allbad.txt", rows)], max_retries=5, **SMALL)
    with pytest.raises(RuntimeError, match="6 samples in a row could not be read"):
        dataset[0]


def test_mostly_missing_list_fails_at_start_naming_paths(tmp_path, media):
    _, good, _, _ = media
    rows = [(str(good[0]), 0)] + [(f"/nowhere/clip{i}.mp4", 0) for i in range(9)]
    with pytest.raises(FileNotFoundError, match=r"9 of 10 checked paths .*/nowhere/clip\d\.mp4"):
        build_dataset(kind="video", paths=[write_list(tmp_path / "stale.txt", rows)], **SMALL)


@pytest.mark.parametrize("policy", ["pad", "skip"])
def test_short_videos_are_padded_or_skipped(media, policy):
    root, good, short, _ = media
    rows = [(short.name, 7), (good[0].name, 0)]
    dataset = build_dataset(kind="video", paths=[write_list(root / f"short_{policy}.txt", rows)],
                            frames_per_clip=4, frame_step=2, crop_size=32, short_video=policy)
    item = dataset[SampleKey(0, seed=0)]
    if policy == "pad":
        assert item["index"] == 0 and item["num_skipped"] == 0
        np.testing.assert_allclose((grey_level(item["clips"]) / 8).round().numpy(), [[0, 2, 4, 4]])
    else:
        assert item["index"] == 1 and item["num_skipped"] == 1


def test_video_folder_labels_follow_sorted_class_names(tmp_path):
    for name in ("walk", "jump"):
        (tmp_path / name).mkdir()
        write_ramp_video(tmp_path / name / "a.mp4", 12)
    dataset = build_dataset(kind="video", paths=[tmp_path], **SMALL)
    assert [(s.path.split("/")[-2], s.label) for s in dataset.samples] == [("jump", 0), ("walk", 1)]
    assert dataset[1]["label"] == 1


def test_images_are_one_frame_clips(tmp_path):
    for label, name in enumerate(("cat", "dog")):
        (tmp_path / "tree" / name).mkdir(parents=True)
        for i in range(2):
            write_image(tmp_path / "tree" / name / f"{i}.png", seed=label * 10 + i)
    training = build_dataset(kind="image", paths=[tmp_path / "tree"], crop_size=24)
    item = training[3]
    assert item["clips"].shape == (1, 3, 1, 24, 24) and item["label"] == 1
    evaluation = build_dataset(kind="image", paths=[tmp_path / "tree"], crop_size=24, training=False,
                               eval_crop="three")
    assert evaluation[0]["clips"].shape == (3, 3, 1, 24, 24)


def test_image_list_skips_corrupt_images(tmp_path):
    write_image(tmp_path / "good.png")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    listing = write_list(tmp_path / "images.txt", [("broken.jpg", 3), ("good.png", 5)])
    dataset = build_dataset(kind="image", paths=[listing], crop_size=16)
    item = dataset[SampleKey(0, seed=0)]
    assert item["index"] == 1 and item["label"] == 5 and item["num_skipped"] == 1


def test_toy_image_lists_and_folders_agree():
    toy = toy_dataset()
    from_list = build_dataset(kind="image", paths=[toy["image_train"]["digit"]], crop_size=16)
    from_folder = build_dataset(kind="image", paths=[toy["image_train_folder"]], crop_size=16)
    assert sorted(from_list.samples, key=str) == sorted(from_folder.samples, key=str)


def test_file_lists_accept_spaces_commas_and_relative_paths(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "list.csv").write_text(
        "# comment\n\na.mp4 1\nb.mp4,2\nmy clip.mp4 3\nx,y.mp4 4\nc.mp4, 5\n/abs/d.mp4 6\n"
    )
    samples = read_file_list(tmp_path / "sub" / "list.csv")
    base = str(tmp_path / "sub")
    assert [(s.path, s.label) for s in samples] == [
        (f"{base}/a.mp4", 1), (f"{base}/b.mp4", 2), (f"{base}/my clip.mp4", 3),
        (f"{base}/x,y.mp4", 4), (f"{base}/c.mp4", 5), ("/abs/d.mp4", 6),
    ]


def test_bad_lists_and_settings_fail_clearly(tmp_path, media):
    _, good, _, _ = media
    (tmp_path / "nolabel.txt").write_text("a.mp4 1\nb.mp4 dog\n")
    with pytest.raises(ValueError, match=r"nolabel.txt:2: .*'b.mp4 dog'"):
        read_file_list(tmp_path / "nolabel.txt")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_dataset(kind="video", paths=[tmp_path / "absent.txt"], **SMALL)
    # A video given as a list: named with its line, not a UnicodeDecodeError.
    with pytest.raises(ValueError, match=f"{good[0]}:1: not UTF-8 text.*binary file"):
        build_dataset(kind="video", paths=[good[0]], **SMALL)
    one = write_list(tmp_path / "one.txt", [(str(good[0]), 0)])
    with pytest.raises(ValueError, match="2 dataset weights for 1 data paths"):
        build_dataset(kind="video", paths=[one], weights=[1, 2], **SMALL)
    with pytest.raises(ValueError, match="num_views=3 .* eval_crop='center'"):
        build_dataset(kind="video", paths=[one], training=False, num_views=3, **SMALL)
    with pytest.raises(ValueError, match="kind"):
        build_dataset(kind="audio", paths=[one])
    with pytest.raises(ValueError, match="Unknown video decoder"):
        build_dataset(kind="video", paths=[one], decoder="opencv", **SMALL)


def test_weighted_lists_are_mixed_by_their_weights(media):
    root, good, _, _ = media
    small = write_list(root / "small.txt", [(good[0].name, 0)] * 2)
    large = write_list(root / "large.txt", [(good[1].name, 1)] * 8)
    dataset = build_dataset(kind="video", paths=[small, large], weights=[3, 1], **SMALL)
    loader = build_loader(dataset, batch_size=2, seed=0)
    loader.sampler.num_samples_total = 4000  # a long epoch, to measure the mix
    from_small = sum(key.index < 2 for key in loader.sampler) / 4000
    assert 0.7 < from_small < 0.8
    with pytest.raises(ValueError, match="positive"):
        build_dataset(kind="video", paths=[small, large], weights=[1, 0], **SMALL)


def test_sample_table_round_trips_paths_and_labels():
    from vjm.data.sources import Sample, SampleTable

    samples = [Sample("/data/a.mp4", 3), Sample("/données/vidéo 2.mp4", 0), Sample("b", 7)]
    table = SampleTable(samples)
    assert len(table) == 3 and list(table) == samples and table[-1] == samples[-1]
    assert table.labels.tolist() == [3, 0, 7]
    with pytest.raises(IndexError):
        table[3]
