"""Draw sampled masks as a PNG: ``python -m vjm.masks.show --fname CONFIG --out masks.png [--num 4]``.

Each generator gets a titled band; each of its samples is a row of T' small H' x W' grids, one per
temporal slice, with context, target and unused (dropped to equalise the batch) tokens coloured.
A legend at the top says so: the colours, what a row and a column are, the token grid.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional, Sequence, Union

import torch
from PIL import Image, ImageDraw

from vjm.masks.base import MaskGenerator
from vjm.masks.grid import check_grid, is_int, token_grid
from vjm.masks.registry import build_mask_generators

UNUSED, CONTEXT, TARGET = 0, 1, 2
PALETTE = torch.tensor(
    [
        (215, 215, 215),  # unused: light grey
        (52, 120, 198),  # context: blue
        (242, 142, 43),  # target: orange
    ],
    dtype=torch.uint8,
)
_BACKGROUND = (255, 255, 255)
_TEXT = (20, 20, 20)
_LINE = 14  # height of a line of text in pixels
_GAP = 4  # between frames and between samples
_MARGIN = 8
_LABEL_W = 22  # the sample numbers left of the rows
# What each colour means, as the legend says it.
LEGEND = (("context: the encoder sees it", CONTEXT), ("target: predicted, in the loss", TARGET),
          ("unused: neither (dropped to even out the batch)", UNUSED))


def _token_pixels(grid: tuple[int, int, int]) -> int:
    """Side of one token in pixels: large enough to see, small enough for a 14 x 14 x 8 grid to fit."""
    return max(3, min(12, 112 // max(grid[1], grid[2])))


def layout_text(grid: tuple[int, int, int]) -> str:
    """The legend's sentence on what a row and a column of the picture are."""
    frames, height, width = grid
    return (f"a row is one sample (numbered left); a column is one time step t' of {frames}, an "
            f"{height}x{width} grid of tokens (rows H', columns W'); T'xH'xW' = {frames}x{height}x{width}")


def label_tokens(context, target, num_tokens: int) -> torch.Tensor:
    """Per-token labels [B, N] (UNUSED, CONTEXT or TARGET) from index tensors [B, K]."""
    labels = torch.full((context.shape[0], num_tokens), UNUSED, dtype=torch.long)
    labels.scatter_(1, context, CONTEXT)
    labels.scatter_(1, target, TARGET)
    return labels


def draw_masks(
    generators: Sequence[MaskGenerator],
    grid,
    num: int,
    path: Union[str, Path],
    seed: int = 0,
) -> Path:
    """Sample ``num`` masks from each generator (one batch each, seeded by ``seed``) and save a PNG."""
    grid = check_grid(grid)
    if not is_int(num) or num < 1:
        raise ValueError(f"num must be a positive integer, got {num!r}")
    if not generators:
        raise ValueError("draw_masks needs at least one mask generator")
    for i, generator in enumerate(generators):
        if not isinstance(generator, MaskGenerator):
            raise ValueError(f"generators[{i}] must be a MaskGenerator, got {type(generator).__name__}")
        if generator.grid != grid:
            raise ValueError(f"generators[{i}] ({generator.kind}) was built for grid {generator.grid}, not {grid}")
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"cannot write {path}: directory {path.parent} does not exist")

    frames, height, width = grid
    px = _token_pixels(grid)
    frame_w, frame_h = width * px, height * px
    band_h = _LINE + num * (frame_h + _GAP)
    left = _MARGIN + _LABEL_W  # where the grids start
    layout = layout_text(grid)
    image_w = max(left + frames * (frame_w + _GAP) + _MARGIN, 7 * len(layout) // 2 + 2 * _MARGIN, 560)
    legend_h = 3 * _LINE + _GAP
    image_h = 2 * _MARGIN + legend_h + len(generators) * (band_h + _GAP)
    image = Image.new("RGB", (image_w, image_h), _BACKGROUND)
    draw = ImageDraw.Draw(image)

    x = _MARGIN
    for name, code in LEGEND:
        draw.rectangle([x, _MARGIN + 2, x + 9, _MARGIN + 11], fill=tuple(PALETTE[code].tolist()))
        draw.text((x + 13, _MARGIN), name, fill=_TEXT)
        x += 13 + int(draw.textlength(name)) + 16
    _wrap(draw, layout, (_MARGIN, _MARGIN + _LINE), image_w - 2 * _MARGIN)
    for t in range(frames):  # column heads
        draw.text((left + t * (frame_w + _GAP), _MARGIN + 3 * _LINE - 2), f"t'={t}", fill=_TEXT)

    top = _MARGIN + legend_h + _GAP
    for i, generator in enumerate(generators):
        rng = torch.Generator().manual_seed(seed + i)
        context, target = generator.sample(num, rng)
        draw.text(
            (_MARGIN, top),
            f"[{i}] {generator.kind}: {context.shape[1]} context, {target.shape[1]} target of {generator.num_tokens}",
            fill=_TEXT,
        )
        colours = PALETTE[label_tokens(context, target, generator.num_tokens)]  # [num, N, 3]
        colours = colours.view(num, frames, height, width, 3)
        colours = colours.repeat_interleave(px, dim=2).repeat_interleave(px, dim=3)
        for row in range(num):
            y = top + _LINE + row * (frame_h + _GAP)
            draw.text((_MARGIN, y + max(0, frame_h - _LINE) // 2), str(row + 1), fill=_TEXT)
            for t in range(frames):
                tile = Image.fromarray(colours[row, t].numpy())
                image.paste(tile, (left + t * (frame_w + _GAP), y))
        top += band_h + _GAP
    image.save(path)
    return path


def _wrap(draw: ImageDraw.ImageDraw, text: str, at: tuple[int, int], width: int) -> None:
    """``text`` on at most two lines of ``width`` pixels from ``at``."""
    words, line = text.split(), ""
    while words and draw.textlength(f"{line} {words[0]}".strip()) <= width:
        line = f"{line} {words.pop(0)}".strip()
    draw.text(at, line, fill=_TEXT)
    if words:
        draw.text((at[0], at[1] + _LINE), " ".join(words), fill=_TEXT)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Draw masks sampled from a config's mask generators as a PNG.")
    parser.add_argument("--fname", required=True, help="YAML config file")
    parser.add_argument("--out", default="masks.png", help="PNG file to write")
    parser.add_argument("--num", type=int, default=4, help="samples per generator")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = build_parser().parse_args(argv)

    from vjm.config import load_config  # the config module is only needed by the CLI

    try:
        cfg = load_config(args.fname, check_data=False)  # masks need the token grid, not the data
        grid = token_grid(cfg.data.frames_per_clip, cfg.data.crop_size, cfg.model.patch_size, cfg.model.tubelet_size)
        generators = build_mask_generators(cfg.masks, grid)
        path = draw_masks(generators, grid, args.num, args.out, seed=args.seed)
    except (ValueError, FileNotFoundError) as error:
        raise SystemExit(f"vjm.masks.show: {error}") from None
    print(f"wrote {len(generators)} mask generator(s) x {args.num} samples on grid {grid} to {path}")


if __name__ == "__main__":
    main()
