import sys

import numpy as np
import pytest

from data_helpers import frame_index_from_marker, marker_frames, write_bad_files, write_image, write_video
from vjm.data.decoders import DecodeError, check_decoder, open_video, read_image

NUM_FRAMES = 40


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = tmp_path_factory.mktemp("decoders") / "markers.mp4"
    return write_video(path, marker_frames(NUM_FRAMES), fps=10, gop=8, b_frames=2)


@pytest.mark.parametrize("decoder", ["pyav", "decord"])
def test_decoder_reads_length_rate_and_the_requested_frames(video, decoder):
    with open_video(video, decoder) as reader:
        assert reader.num_frames == NUM_FRAMES
        assert reader.fps == pytest.approx(10.0)
        indices = [33, 2, 2, 17, 39, 0, 8, 9]  # unsorted, repeated, across key frames
        frames = reader.get_frames(indices)
    assert frames.shape == (len(indices), 48, 64, 3) and frames.dtype == np.uint8
    assert [frame_index_from_marker(f) for f in frames] == indices


def test_pyav_and_decord_return_the_same_frames(video):
    rng = np.random.default_rng(0)
    with open_video(video, "pyav") as pyav_reader, open_video(video, "decord") as decord_reader:
        for _ in range(5):
            indices = rng.integers(0, NUM_FRAMES, size=12).tolist()
            np.testing.assert_array_equal(pyav_reader.get_frames(indices), decord_reader.get_frames(indices))
        # A clip in order, then a jump backwards: seeking must not return stale frames.
        for indices in (list(range(24, 40, 2)), [1, 3, 5]):
            np.testing.assert_array_equal(pyav_reader.get_frames(indices), decord_reader.get_frames(indices))


def test_out_of_range_index_is_a_clear_error(video):
    with open_video(video, "pyav") as reader:
        with pytest.raises(ValueError, match=r"outside \[0, 40\)"):
            reader.get_frames([0, 40])


@pytest.mark.parametrize("decoder", ["pyav", "decord"])
@pytest.mark.parametrize("damage", ["missing", "empty", "truncated", "garbage"])
def test_unreadable_files_raise_decode_error_naming_the_path(tmp_path, video, decoder, damage):
    path = write_bad_files(tmp_path, video)[damage]
    with pytest.raises(DecodeError) as info:
        with open_video(path, decoder) as reader:
            reader.get_frames(range(reader.num_frames))
    assert str(path) in str(info.value)


def test_unknown_decoder_is_rejected(video):
    with pytest.raises(ValueError, match="pyav"):
        open_video(video, "ffmpeg-cli")
    with pytest.raises(ValueError, match="Unknown video decoder"):
        check_decoder("opencv")


def test_missing_decord_gives_an_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "decord", None)  # makes `import decord` fail
    with pytest.raises(ImportError, match="pip install decord"):
        check_decoder("decord")


def test_read_image_gives_one_rgb_frame(tmp_path):
    array = read_image(write_image(tmp_path / "a.png", height=30, width=20))
    assert array.shape == (1, 30, 20, 3) and array.dtype == np.uint8
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DecodeError, match="bad.jpg"):
        read_image(tmp_path / "bad.jpg")
