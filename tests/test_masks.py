"""Mask generators, their registry and validation, the collator, and the PNG drawing."""

import math
import pickle

import pytest
import torch
from PIL import Image

from vjm.masks import (
    MaskCollator,
    MultiBlockMask,
    build_mask_generator,
    build_mask_generators,
    mask_kinds,
    subsample_sorted,
    token_grid,
)
from vjm.masks.show import PALETTE, CONTEXT, TARGET, draw_masks, main as show_main

GRID = (4, 8, 8)  # small enough to be quick, large enough for several blocks and rows
SPECS = {
    "multiblock": {"num_blocks": 4, "spatial_scale": 0.15},
    "tube": {"ratio": 0.75},
    "random": {"ratio": 0.75},
    "clip_row": {"ratio": 0.5},
    "frame_row": {"ratio": 0.5},
}


pytestmark = pytest.mark.usefixtures("one_thread")


def rng(seed=0):
    return torch.Generator().manual_seed(seed)


def dense(indices, num_tokens):
    """Index tensor [B, K] -> bool [B, N]."""
    out = torch.zeros(indices.shape[0], num_tokens, dtype=torch.bool)
    return out.scatter_(1, indices, True)


# --------------------------------------------------------------------------- properties of every kind


def test_all_kinds_registered():
    assert mask_kinds() == sorted(SPECS)


@pytest.mark.parametrize("kind", sorted(SPECS))
def test_sample_is_sorted_unique_disjoint_and_rectangular(kind):
    generator = build_mask_generator(kind, GRID, **SPECS[kind])
    num_tokens = math.prod(GRID)
    for seed in range(5):
        context, target = generator.sample(8, rng(seed))
        assert context.dtype == target.dtype == torch.long
        assert context.shape[0] == target.shape[0] == 8
        assert context.shape[1] >= 1 and target.shape[1] >= 1
        for indices in (context, target):
            assert (indices[:, 1:] > indices[:, :-1]).all(), "sorted and unique per row"
            assert indices.min() >= 0 and indices.max() < num_tokens
        assert not (dense(context, num_tokens) & dense(target, num_tokens)).any(), "context and target disjoint"


@pytest.mark.parametrize("kind", sorted(SPECS))
def test_same_generator_state_gives_same_masks(kind):
    generator = build_mask_generator(kind, GRID, **SPECS[kind])
    first, second = generator.sample(4, rng(7)), generator.sample(4, rng(7))
    other = generator.sample(4, rng(8))
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    assert not all(a.shape == b.shape and torch.equal(a, b) for a, b in zip(first, other))


# --------------------------------------------------------------------------- multi-block


def expected_union_fraction(grid, size, num_blocks):
    """Exact mean coverage of ``num_blocks`` boxes of ``size`` placed uniformly and independently."""

    def cover_probability(length, extent):
        starts = length - extent + 1
        return torch.tensor([sum(s <= i < s + extent for s in range(starts)) / starts for i in range(length)])

    p_t, p_h, p_w = (cover_probability(n, e) for n, e in zip(grid, size))
    p_box = p_t[:, None, None] * p_h[None, :, None] * p_w[None, None, :]
    return float((1 - (1 - p_box) ** num_blocks).mean())


def test_multiblock_masked_fraction_matches_exact_expectation():
    grid = (4, 10, 10)
    generator = build_mask_generator(
        "multiblock", grid, num_blocks=3, spatial_scale=0.16, temporal_scale=0.5, aspect_ratio=[1.0, 1.0]
    )
    assert generator.block_shape(0.5, 0.16, 1.0) == (2, 4, 4)
    _, target = generator.sample_dense(2000, rng(0))
    expected = expected_union_fraction(grid, (2, 4, 4), 3)
    # Standard error of the mean is about 0.003 here.
    assert abs(target.float().mean().item() - expected) < 0.015


def test_multiblock_single_block_is_a_box_of_the_configured_scale_and_aspect():
    frames, height, width = grid = (4, 16, 16)
    generator = build_mask_generator(
        "multiblock", grid, num_blocks=1, spatial_scale=[0.1, 0.3], temporal_scale=[0.5, 1.0], aspect_ratio=[0.75, 1.5]
    )
    ratios = []
    for seed in range(40):
        _, target = generator.sample_dense(1, rng(seed))
        cells = target.view(grid).nonzero()
        lo, hi = cells.min(0).values, cells.max(0).values
        t, h, w = (hi - lo + 1).tolist()
        assert len(cells) == t * h * w, "one block is a full box"
        assert 2 <= t <= frames
        area = h * w / (height * width)
        assert 0.1 - 0.05 <= area <= 0.3 + 0.05, "rounding h and w moves the area only a little"
        ratios.append(h / w)
    assert min(ratios) >= 0.75 * 0.8 and max(ratios) <= 1.5 * 1.25
    assert max(ratios) / min(ratios) > 1.3, "aspect ratios are drawn from the range, not fixed"


@pytest.mark.parametrize("num_blocks, spatial_scale", [(8, 0.15), (2, 0.7)])
def test_paper_pair_spans_all_frames_and_masks_most_tokens(num_blocks, spatial_scale):
    grid = (8, 14, 14)  # 16 frames at 224 px, tubelet 2, patch 16
    generator = build_mask_generator("multiblock", grid, num_blocks=num_blocks, spatial_scale=spatial_scale)
    context, target = generator.sample_dense(64, rng(0))
    target = target.view(-1, *grid)
    # Temporal scale 1.0: every frame carries the same spatial mask.
    assert (target == target[:, :1]).all()
    fraction = target.float().mean().item()
    # On this grid the union covers about 63 % (short range) and 81 % (long range) of the tokens.
    assert 0.55 < fraction < 0.9
    if num_blocks == 2:
        assert fraction > 0.72, "two large blocks mask more than eight small ones"


def test_multiblock_max_temporal_keep_keeps_context_in_the_first_frames():
    grid = (8, 6, 6)
    generator = build_mask_generator("multiblock", grid, num_blocks=2, spatial_scale=0.2, max_temporal_keep=0.5)
    context, _ = generator.sample(16, rng(0))
    assert (context // (6 * 6)).max() < 4, "context from frames 0-3 only"
    # The later frames are wholly target (before equalising counts): the predictor must predict the future.
    context, target = generator.sample_dense(16, rng(0))
    assert target.view(-1, *grid)[:, 4:].all()
    assert context.view(-1, *grid)[:, :4].any(dim=(1, 2, 3)).all()


def test_multiblock_max_keep_caps_context():
    generator = build_mask_generator("multiblock", GRID, num_blocks=2, spatial_scale=0.15, max_keep=20)
    context, _ = generator.sample(8, rng(0))
    assert context.shape[1] == 20


def test_multiblock_redraws_samples_whose_blocks_cover_everything():
    # Five 3x3 blocks on a 4x4 grid cover it completely with probability ~0.24 per sample.
    generator = build_mask_generator("multiblock", (1, 4, 4), num_blocks=5, spatial_scale=9 / 16, aspect_ratio=1.0)
    context, _ = generator.sample_dense(256, rng(0))
    assert context.any(dim=1).all()


def test_multiblock_that_can_never_keep_context_fails_at_construction():
    with pytest.raises(ValueError, match="no context token would remain"):
        build_mask_generator("multiblock", GRID, spatial_scale=1.0, aspect_ratio=1.0)


def test_multiblock_that_almost_never_keeps_context_fails_at_sampling_with_advice():
    # 30 blocks of 3x3 on a 4x4 grid use all four placements with probability ~0.9993.
    generator = build_mask_generator("multiblock", (1, 4, 4), num_blocks=30, spatial_scale=9 / 16, aspect_ratio=1.0)
    with pytest.raises(ValueError, match="covered every context token.*lower num_blocks"):
        generator.sample(2, rng(0))


# --------------------------------------------------------------------------- tube and rows


def test_tube_repeats_one_spatial_mask_with_the_configured_ratio():
    frames, height, width = GRID
    generator = build_mask_generator("tube", GRID, ratio=0.75)
    context, target = generator.sample(200, rng(0))
    assert target.shape[1] == frames * 48 and context.shape[1] == frames * 16  # round(0.75 * 64) = 48
    masked = dense(target, math.prod(GRID)).view(-1, frames, height * width)
    assert (masked == masked[:, :1]).all(), "identical across time"
    # Every spatial position is masked with probability 0.75 (200 samples: s.e. about 0.03).
    per_position = masked[:, 0].float().mean(0)
    assert (per_position - 0.75).abs().max() < 0.15


def test_tube_on_an_image_is_random_masking():
    context, target = build_mask_generator("tube", (1, 14, 14), ratio=0.9).sample(3, rng(0))
    assert target.shape == (3, 176) and context.shape == (3, 20)


def test_clip_row_masks_whole_rows_shared_by_all_frames():
    frames, height, width = GRID
    generator = build_mask_generator("clip_row", GRID, ratio=0.5)
    _, target = generator.sample(50, rng(0))
    masked = dense(target, math.prod(GRID)).view(-1, frames, height, width)
    assert (masked == masked[..., :1]).all(), "whole rows"
    assert (masked == masked[:, :1]).all(), "same rows in every frame"
    assert (masked[:, 0, :, 0].sum(1) == 4).all(), "round(0.5 * 8) rows"
    per_row = masked[:, 0, :, 0].float().mean(0)
    assert (per_row - 0.5).abs().max() < 0.25, "every row gets masked"


def test_frame_row_masks_whole_rows_drawn_per_frame():
    frames, height, width = GRID
    generator = build_mask_generator("frame_row", GRID, ratio=0.25)
    _, target = generator.sample(50, rng(0))
    masked = dense(target, math.prod(GRID)).view(-1, frames, height, width)
    assert (masked == masked[..., :1]).all(), "whole rows"
    assert (masked[..., 0].sum(-1) == 2).all(), "round(0.25 * 8) rows in each frame"
    differs_over_time = (masked != masked[:, :1]).flatten(1).any(1)
    assert differs_over_time.float().mean() > 0.9, "rows drawn independently per frame"


# --------------------------------------------------------------------------- unbiased equal counts


def test_subsample_sorted_keeps_each_candidate_equally_often():
    mask = torch.zeros(4000, 12, dtype=torch.bool)
    mask[:, 2:12] = True  # ten candidates
    kept = subsample_sorted(mask, 3, rng(0))
    assert kept.shape == (4000, 3) and (kept[:, 1:] > kept[:, :-1]).all()
    assert kept.min() >= 2
    frequency = torch.bincount(kept.flatten(), minlength=12)[2:].float() / 4000
    assert (frequency - 0.3).abs().max() < 0.04  # s.e. about 0.007


def test_rows_with_exactly_k_candidates_keep_them_all():
    mask = torch.tensor([[True, False, True, True], [False, True, True, True]])
    assert subsample_sorted(mask, 3, rng(0)).tolist() == [[0, 2, 3], [1, 2, 3]]


def _kept_rates(candidates, kept):
    """Fraction of the candidates [B, N] in the first and in the last fifth of raster order that were kept."""
    fifth = candidates.shape[1] // 5
    first = kept[:, :fifth].sum() / candidates[:, :fifth].sum()
    last = kept[:, -fifth:].sum() / candidates[:, -fifth:].sum()
    return first.item(), last.item()


def test_equal_counts_do_not_favour_the_start_of_the_raster_order():
    grid = (8, 14, 14)
    num_tokens = math.prod(grid)
    generator = build_mask_generator("multiblock", grid, num_blocks=2, spatial_scale=0.7)  # counts vary a lot
    candidates, kept, truncated = [], [], []
    for seed in range(8):
        context, _ = generator.sample_dense(16, rng(seed))
        counts = context.sum(1)
        assert counts.max() > 2 * counts.min(), "the test needs rows of quite different lengths"
        # What the generator returns: sample() is sample_dense() on the same draws, then equal counts.
        chosen = dense(generator.sample(16, rng(seed))[0], num_tokens)
        assert not (chosen & ~context).any(), "kept tokens are context tokens"
        candidates.append(context)
        kept.append(chosen)
        # V-JEPA's way, for comparison: cut each sorted list at the batch minimum.
        k = int(counts.min())
        truncated.append(dense(torch.stack([row.nonzero().squeeze(1)[:k] for row in context]), num_tokens))
    candidates = torch.cat(candidates)
    first, last = _kept_rates(candidates, torch.cat(kept))
    assert abs(first - last) < 0.1 * max(first, last), (first, last)
    # The same statistic catches truncation's bias: the last tokens are dropped far more often.
    first_t, last_t = _kept_rates(candidates, torch.cat(truncated))
    assert last_t < 0.5 * first_t, (first_t, last_t)


# --------------------------------------------------------------------------- building and validation


def test_build_mask_generators_from_config_entries():
    generators = build_mask_generators(
        [{"kind": "multiblock", "num_blocks": 8, "spatial_scale": [0.15, 0.15]}, {"kind": "tube", "ratio": 0.9}],
        (8, 14, 14),
    )
    assert isinstance(generators[0], MultiBlockMask)
    assert generators[0].spatial_scale == (0.15, 0.15) and generators[0].aspect_ratio == (0.75, 1.5)
    assert generators[1].kind == "tube" and generators[1].grid == (8, 14, 14)


def test_unknown_kind_names_it_and_lists_valid_kinds():
    with pytest.raises(ValueError) as error:
        build_mask_generators([{"kind": "multi_block"}], GRID)
    assert str(error.value) == (
        "masks[0]: unknown mask kind 'multi_block'; did you mean 'multiblock'? "
        "valid kinds: clip_row, frame_row, multiblock, random, tube"
    )


def test_unknown_parameter_names_it_suggests_and_lists_valid_ones():
    with pytest.raises(ValueError) as error:
        build_mask_generators([{"kind": "tube"}, {"kind": "multiblock", "num_block": 8}], GRID)
    assert str(error.value) == (
        "masks[1]: unknown parameter 'num_block' for kind 'multiblock'; did you mean 'num_blocks'? valid: "
        "aspect_ratio, max_keep, max_temporal_keep, num_blocks, spatial_scale, temporal_scale"
    )


def test_missing_kind_and_bad_entries_are_named():
    with pytest.raises(ValueError, match=r"masks\[0\]: missing 'kind'"):
        build_mask_generators([{"ratio": 0.9}], GRID)
    with pytest.raises(ValueError, match=r"masks\[1\]: must be a mapping"):
        build_mask_generators([{"kind": "tube"}, "tube"], GRID)
    with pytest.raises(ValueError, match="masks must be a list"):
        build_mask_generators({"kind": "tube"}, GRID)
    with pytest.raises(ValueError, match=r"unknown parameter 'grid' for kind 'tube'"):
        build_mask_generators([{"kind": "tube", "grid": [1, 2, 3]}], GRID)


@pytest.mark.parametrize(
    "kind, params, message",
    [
        ("multiblock", {"spatial_scale": 0.0}, r"'spatial_scale' must be a number or a pair \[min, max\] with 0 < min <= max <= 1"),  # noqa: E501
        ("multiblock", {"spatial_scale": 1.5}, r"'spatial_scale' must be"),
        ("multiblock", {"temporal_scale": [0.8, 0.5]}, r"'temporal_scale' must be"),
        ("multiblock", {"aspect_ratio": [1.5, 0.75]}, r"'aspect_ratio' must be .* 0 < min <= max, got \[1.5, 0.75\]"),
        ("multiblock", {"aspect_ratio": "wide"}, r"'aspect_ratio' must be"),
        ("multiblock", {"num_blocks": 0}, r"'num_blocks' must be an integer >= 1"),
        ("multiblock", {"num_blocks": True}, r"'num_blocks' must be an integer"),
        ("multiblock", {"max_temporal_keep": 0}, r"'max_temporal_keep' must be a number in \(0, 1\]"),
        ("multiblock", {"max_keep": 0}, r"'max_keep' must be an integer >= 1"),
        ("tube", {"ratio": 1.0}, r"'ratio' must be a number in \(0, 1\)"),
        ("tube", {"ratio": 0}, r"'ratio' must be a number in \(0, 1\)"),
        ("clip_row", {"ratio": "half"}, r"'ratio' must be a number in \(0, 1\)"),
        ("tube", {"ratio": 0.005}, r"ratio=0.005 of 64 spatial positions masks 0, which leaves no target"),
        ("frame_row", {"ratio": 0.99}, r"ratio=0.99 of 8 rows masks 8, which leaves no context"),
    ],
)
def test_invalid_values_are_named_with_where_and_kind(kind, params, message):
    with pytest.raises(ValueError, match=message) as error:
        build_mask_generator(kind, GRID, where="masks[2]", **params)
    assert str(error.value).startswith(f"masks[2]: kind '{kind}': ")


def test_row_masks_need_at_least_two_rows():
    with pytest.raises(ValueError, match="leaves no"):
        build_mask_generator("clip_row", (4, 1, 8), ratio=0.5)


def test_bad_grid_and_sample_arguments():
    with pytest.raises(ValueError, match="token grid must be three positive integers"):
        build_mask_generator("tube", (8, 14))
    generator = build_mask_generator("tube", GRID)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        generator.sample(0, rng())
    with pytest.raises(ValueError, match="generator must be a torch.Generator"):
        generator.sample(2, 0)


def test_token_grid():
    assert token_grid(16, 224, 16, 2) == (8, 14, 14)
    assert token_grid(1, 224, 16, 2) == (1, 14, 14), "an image fills one tubelet"
    assert token_grid(8, (224, 160), (16, 16), 2) == (4, 14, 10)
    with pytest.raises(ValueError, match="frames_per_clip=15 is not divisible by tubelet_size=2"):
        token_grid(15, 224, 16, 2)
    with pytest.raises(ValueError, match="crop_size 225 is not divisible by patch_size 16"):
        token_grid(16, 225, 16, 2)
    with pytest.raises(ValueError, match="frames must be a positive integer"):
        token_grid(0, 224, 16, 2)


# --------------------------------------------------------------------------- collator


def make_samples(indices, clips_per_sample=2, frames=4, size=16):
    return [
        {
            "clips": torch.full((clips_per_sample, 3, frames, size, size), float(i)),
            "label": 10 + i,
            "index": i,
            "position": i,
            "num_skipped": i % 2,
        }
        for i in indices
    ]


def collator(seed=0, global_batch_size=None):
    grid = token_grid(4, 16, 4, 2)  # (2, 4, 4)
    return MaskCollator(
        build_mask_generators([{"kind": "multiblock", "num_blocks": 2, "spatial_scale": 0.25}, {"kind": "tube"}], grid),
        seed=seed, global_batch_size=global_batch_size,
    )


def masks_equal(a, b):
    return all(x.shape == y.shape and torch.equal(x, y) for pa, pb in zip(a, b) for x, y in zip(pa, pb))


def test_collator_output_layout():
    batch = collator()(make_samples([3, 5, 8]))
    assert batch["clip"].shape == (6, 3, 4, 16, 16)
    assert batch["clip"][:, 0, 0, 0, 0].tolist() == [3, 3, 5, 5, 8, 8], "sample-major"
    assert batch["label"].dtype == torch.long and batch["label"].tolist() == [13, 13, 15, 15, 18, 18]
    assert batch["index"].tolist() == batch["position"].tolist() == [3, 5, 8]
    assert batch["num_skipped"] == 2
    assert len(batch["masks"]) == 2
    for context, target in batch["masks"]:
        assert context.shape[0] == target.shape[0] == 6
    assert batch["masks"][1][1].shape == (6, 2 * 14), "tube: round(0.9 * 16) = 14 masked positions per frame"


def test_collator_masks_depend_on_seed_epoch_and_positions_only():
    samples = make_samples([3, 5, 8])
    reference = collator()(samples)["masks"]
    # Another instance (another worker, a resumed run) with the same state draws the same masks,
    # whatever it collated before.
    other = collator()
    other(make_samples([1, 2, 4]))
    assert masks_equal(other(samples)["masks"], reference)
    assert not masks_equal(collator()(make_samples([3, 5, 9]))["masks"], reference)
    assert not masks_equal(collator(seed=1)(samples)["masks"], reference)
    next_epoch = collator()
    next_epoch.set_epoch(1)
    assert not masks_equal(next_epoch(samples)["masks"], reference)
    # Each clip gets its own mask.
    context = reference[0][0]
    assert any(not torch.equal(context[0], context[i]) for i in range(1, 6))
    # The position keys the masks, not the dataset index (a bad file's replacement keeps its masks).
    replaced = make_samples([3, 5, 8])
    replaced[1]["index"] = 40
    assert masks_equal(collator()(replaced)["masks"], reference)


@pytest.mark.parametrize("processes", [2, 4])
def test_a_global_batch_split_over_processes_gets_the_masks_of_one_process(processes):
    """Each process collates its block of a global batch of 8: concatenated, the masks (and so
    the equal token counts) are those of one process collating all 8."""
    def collate(samples, global_batch_size):  # box shapes and token counts that vary from batch to batch
        specs = [{"kind": "multiblock", "num_blocks": 2, "spatial_scale": [0.1, 0.5]}, {"kind": "tube"}]
        generators = build_mask_generators(specs, token_grid(4, 32, 4, 2))
        return MaskCollator(generators, seed=0, global_batch_size=global_batch_size)(samples)["masks"]

    samples = make_samples(range(8, 16), size=32)  # the second global batch of 8 positions
    whole = collate(samples, 8)
    share = 8 // processes
    parts = [collate(samples[r * share:(r + 1) * share], 8) for r in range(processes)]
    joined = [tuple(torch.cat([part[g][i] for part in parts]) for i in range(2)) for g in range(2)]
    assert masks_equal(joined, whole)
    # Without global_batch_size a share would be a batch of its own: other box shapes, other counts.
    alone = [collate(samples[r * share:(r + 1) * share], None) for r in range(processes)]
    assert any(a[0][0].shape != p[0][0].shape for a, p in zip(alone, parts))
    with pytest.raises(ValueError, match=r"samples at positions \[16\] are not in the global batch of positions 8..15"):
        collate(make_samples([15, 16], size=32), 8)


def test_collator_state_round_trip():
    trained = collator(seed=5)
    trained.set_epoch(3)
    state = trained.state_dict()
    assert state == {"seed": 5, "epoch": 3}
    resumed = collator(seed=0)
    resumed.load_state_dict(state)
    samples = make_samples([0, 7])
    assert masks_equal(resumed(samples)["masks"], trained(samples)["masks"])
    with pytest.raises(ValueError, match="lacks \\['epoch'\\]"):
        resumed.load_state_dict({"seed": 1})


class _Samples(torch.utils.data.Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        return make_samples([i])[0]


def test_collator_masks_do_not_depend_on_dataloader_workers():
    def masks(num_workers):
        loader = torch.utils.data.DataLoader(_Samples(), batch_size=4, num_workers=num_workers, collate_fn=collator())
        return [batch["masks"] for batch in loader]

    in_process, in_workers = masks(0), masks(2)
    assert len(in_process) == 2
    assert all(masks_equal(a, b) for a, b in zip(in_process, in_workers))


def test_collator_survives_pickling_for_spawned_workers():
    original = collator(seed=3)
    original.set_epoch(2)
    copy = pickle.loads(pickle.dumps(original))
    samples = make_samples([4, 6])
    assert masks_equal(copy(samples)["masks"], original(samples)["masks"])


def test_collator_rejects_bad_samples():
    with pytest.raises(ValueError, match="non-empty list"):
        collator()([])
    with pytest.raises(ValueError, match=r"sample 0 lacks \['num_skipped'\]"):
        collator()([{"clips": torch.zeros(1, 3, 4, 16, 16), "label": 0, "index": 0, "position": 0}])
    mixed = make_samples([0, 1])
    mixed[1]["clips"] = torch.zeros(1, 3, 4, 16, 16)
    with pytest.raises(ValueError, match="sample 1: clips of shape \\(1, 3, 4, 16, 16\\) differ"):
        collator()(mixed)
    with pytest.raises(ValueError, match="must be a list of MaskGenerator"):
        MaskCollator(build_mask_generator("tube", GRID), seed=0)


# --------------------------------------------------------------------------- drawing


def _colours(path):
    image = Image.open(path).convert("RGB")
    return image, {colour for _, colour in image.getcolors(maxcolors=1 << 16)}


def test_draw_masks_writes_a_png_with_context_and_target(tmp_path):
    generators = build_mask_generators([{"kind": "multiblock", "num_blocks": 2}, {"kind": "clip_row"}], GRID)
    path = draw_masks(generators, GRID, num=3, path=tmp_path / "masks.png")
    image, colours = _colours(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert image.width >= GRID[0] * GRID[2] * 3 and image.height > 2 * 3 * GRID[1] * 3
    assert tuple(PALETTE[CONTEXT].tolist()) in colours and tuple(PALETTE[TARGET].tolist()) in colours
    with pytest.raises(ValueError, match=r"generators\[0\] \(multiblock\) was built for grid"):
        draw_masks(generators, (1, 8, 8), num=1, path=tmp_path / "x.png")


CONFIG = """
data:
  frames_per_clip: 4
  crop_size: 64
model:
  patch_size: 16
  tubelet_size: 2
masks:
  - {kind: multiblock, num_blocks: 8, spatial_scale: [0.15, 0.15]}
  - {kind: tube, %s: 0.9}
"""


def test_show_cli_draws_the_masks_of_a_config(tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text(CONFIG % "ratio")
    out = tmp_path / "masks.png"
    show_main(["--fname", str(config), "--out", str(out), "--num", "2"])
    assert "2 mask generator(s) x 2 samples on grid (2, 4, 4)" in capsys.readouterr().out
    image, colours = _colours(out)
    assert tuple(PALETTE[CONTEXT].tolist()) in colours and tuple(PALETTE[TARGET].tolist()) in colours


def test_show_cli_reports_a_bad_mask_entry(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(CONFIG % "mask_ratio")
    expected = r"masks\[1\]: unknown parameter 'mask_ratio' for kind 'tube'; did you mean 'ratio'\?"
    with pytest.raises(SystemExit, match=expected):
        show_main(["--fname", str(config), "--out", str(tmp_path / "masks.png")])
