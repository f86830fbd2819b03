import numpy as np
import pytest
import torch

from vjm.data.clip_sampling import ClipSampler, ShortVideoError


def test_training_clips_are_strided_random_and_inside_the_video():
    sampler = ClipSampler(frames_per_clip=8, frame_step=4, num_clips=3, training=True)
    generator = torch.Generator().manual_seed(0)
    starts = []
    for _ in range(200):
        indices = sampler(num_frames=100, generator=generator)
        assert indices.shape == (3, 8)
        assert (np.diff(indices, axis=1) == 4).all()
        assert indices.min() >= 0 and indices.max() <= 99
        starts += indices[:, 0].tolist()
    # Uniform over every legal start 0..71 (a clip spans 29 frames).
    assert min(starts) == 0 and max(starts) == 71
    assert len(set(starts)) > 60


def test_training_clips_follow_the_generator():
    sampler = ClipSampler(frames_per_clip=4, frame_step=2, num_clips=2)
    a = sampler(50, generator=torch.Generator().manual_seed(3))
    b = sampler(50, generator=torch.Generator().manual_seed(3))
    c = sampler(50, generator=torch.Generator().manual_seed(4))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_evaluation_segments_are_evenly_spaced_and_span_the_video():
    sampler = ClipSampler(frames_per_clip=4, frame_step=2, num_segments=3, training=False)
    indices = sampler(num_frames=31)
    np.testing.assert_array_equal(indices[:, 0], [0, 12, 24])
    assert indices[-1, -1] == 30  # the last segment ends on the last frame
    np.testing.assert_array_equal(indices, sampler(num_frames=31))  # no randomness


def test_single_evaluation_segment_is_centred():
    sampler = ClipSampler(frames_per_clip=4, frame_step=1, num_segments=1, training=False)
    np.testing.assert_array_equal(sampler(num_frames=20), [[8, 9, 10, 11]])


def test_target_fps_sets_the_step_from_the_video_rate():
    sampler = ClipSampler(frames_per_clip=4, fps=10.0, num_segments=1, training=False)
    np.testing.assert_array_equal(np.diff(sampler(num_frames=200, video_fps=30.0)[0]), [3, 3, 3])
    # 25 fps to 10 fps: a step of 2.5 frames, rounded half up per frame.
    np.testing.assert_array_equal(sampler.offsets(25.0), [0, 3, 5, 8])
    with pytest.raises(ValueError, match="frame rate is unknown"):
        sampler(num_frames=200, video_fps=0.0)


def test_short_video_is_padded_with_its_last_frame():
    sampler = ClipSampler(frames_per_clip=6, frame_step=2, num_clips=2, short_video="pad")
    np.testing.assert_array_equal(sampler(num_frames=7), [[0, 2, 4, 6, 6, 6]] * 2)


def test_short_video_can_be_skipped():
    sampler = ClipSampler(frames_per_clip=6, frame_step=2, short_video="skip")
    with pytest.raises(ShortVideoError, match="7 frames is shorter than one clip"):
        sampler(num_frames=7)
    assert sampler(num_frames=11).shape == (1, 6)  # exactly one clip long is fine


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"frames_per_clip": 0}, "frames_per_clip"),
        ({"frame_step": 1.5}, "frame_step"),
        ({"num_clips": -1}, "num_clips"),
        ({"fps": 0}, "fps"),
        ({"short_video": "drop"}, "short_video"),
    ],
)
def test_bad_settings_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ClipSampler(**kwargs)
