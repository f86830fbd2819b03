import numpy as np
import pytest
import torch

from vjm.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    EvalClipTransform,
    TrainClipTransform,
    build_transform,
)


def random_frames(num_frames=4, height=48, width=64, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random((num_frames, height, width, 3)) * 255).astype(np.uint8)


def full_augmentation(crop_size=32):
    return TrainClipTransform(crop_size, scale=(0.2, 1.0), hflip=True, randaugment=True, random_erasing=1.0)


def test_training_transform_gives_one_normalised_view_per_clip():
    out = full_augmentation()(random_frames())
    assert out.shape == (1, 3, 4, 32, 32) and out.dtype == torch.float32
    # Normalised: values leave [0, 1] on both sides.
    assert out.min() < -0.5 and out.max() > 1.5


def test_every_frame_gets_the_same_random_parameters():
    frames = random_frames(num_frames=5)
    transform = full_augmentation()
    for seed in range(8):
        torch.manual_seed(seed)
        clip = transform(frames)[0]  # [C, T, H, W]
        for t in range(5):
            torch.manual_seed(seed)  # the same draws, applied to frame t alone
            alone = transform(frames[t : t + 1])[0, :, 0]
            torch.testing.assert_close(clip[:, t], alone, rtol=0, atol=1e-5)


def test_identical_frames_stay_identical_and_draws_differ_between_clips():
    frames = np.repeat(random_frames(num_frames=1), 6, axis=0)
    transform = full_augmentation()
    outs = [transform(frames)[0] for _ in range(4)]
    for out in outs:
        for t in range(1, 6):
            torch.testing.assert_close(out[:, t], out[:, 0], rtol=0, atol=0)
    assert any(not torch.equal(outs[0], other) for other in outs[1:])


def test_centre_crop_keeps_the_centre_and_normalises_the_mean_colour_to_zero():
    mean_colour = np.round(np.array(IMAGENET_MEAN) * 255).astype(np.uint8)
    frames = np.broadcast_to(mean_colour, (2, 60, 90, 3)).copy()
    frames[:, 25:35, 40:50] = 255  # a white square in the middle
    out = EvalClipTransform(32, "center")(frames)
    assert out.shape == (1, 3, 2, 32, 32)
    assert out[..., :4, :4].abs().max() < 0.02  # the corner is background, ~0 after normalisation
    centre = out[0, :, 0, 14:18, 14:18]
    expected = (1 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    torch.testing.assert_close(centre.mean(dim=(1, 2)), expected, atol=0.05, rtol=0)


@pytest.mark.parametrize("height, width", [(40, 100), (100, 40)])
def test_three_crops_cover_both_ends_of_the_long_side(height, width):
    long_side = max(height, width)
    ramp = np.linspace(0, 255, long_side).astype(np.uint8)
    ramp = ramp[None, :] if width > height else ramp[:, None]
    frames = np.broadcast_to(ramp[..., None], (3, height, width, 3)).copy()
    views = EvalClipTransform(40, "three")(frames)
    assert views.shape == (3, 3, 3, 40, 40)
    across = -2 if width > height else -1  # average across the short side
    first, middle, last = (v[0, 0].mean(dim=across) for v in views)  # red profile along the long side
    red = views[:, 0]
    # The outer crops reach both ends of the frame.
    assert first.min().item() == pytest.approx(red.min().item(), abs=1e-4)
    assert last.max().item() == pytest.approx(red.max().item(), abs=1e-4)
    assert first.mean() < middle.mean() < last.mean()


def test_build_transform_picks_training_or_evaluation():
    assert isinstance(build_transform(True, 16), TrainClipTransform)
    evaluation = build_transform(False, 16, eval_crop="three")
    assert isinstance(evaluation, EvalClipTransform) and evaluation.num_views == 3


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"scale": (0.5, 0.2)}, "random_resize_scale"),
        ({"scale": (0.2, 1.5)}, "random_resize_scale"),
        ({"aspect": (0.0, 1.0)}, "random_resize_aspect"),
        ({"random_erasing": 2.0}, "random_erasing"),
        ({"crop_size": 0}, "crop_size"),
    ],
)
def test_bad_training_settings_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TrainClipTransform(**kwargs)


def test_bad_eval_crop_is_rejected():
    with pytest.raises(ValueError, match="eval_crop"):
        EvalClipTransform(32, "five")
