"""Draw a checkpoint's pictures as a PNG: ``python -m vjm.objectives.show --checkpoint PATH --out recon.png``.

The objective draws them (Objective.images; MAE: each clip's input, mask and reconstruction) for
the first ``--num`` clips of the run's validation data (its training data when it lists none),
centre-cropped, masked by the run's own mask generators (seeded by ``--seed``). The run's config
comes from the checkpoint, so nothing else needs to be given.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional, Sequence

import torch

from vjm.config import Config, config_from_dict
from vjm.masks import MaskCollator, build_mask_generators, token_grid

from .base import Objective, build_objective
from .pictures import save_png


def picture_batch(cfg: Config, num: int, seed: int = 0) -> dict:
    """The first ``num`` clips of the config's validation (else training) data, as a training batch."""
    from vjm.data import build_dataset

    data = cfg.data
    if data.dataset == "toy":
        from vjm.data.toy import ensure_toy_dataset

        lists = ensure_toy_dataset(data.toy_root, num_train=data.toy_num_train, num_val=data.toy_num_val,
                                   frames=data.toy_frames, size=data.toy_size, seed=cfg.run.seed)
        kind, paths = "video", [lists["val"][data.toy_task]]
    else:
        kind, paths = data.dataset, data.val or data.train
    dataset = build_dataset(kind=kind, paths=paths, frames_per_clip=data.frames_per_clip, frame_step=data.frame_step,
                            fps=data.fps, crop_size=data.crop_size, training=False, decoder=data.decoder,
                            short_video=data.short_video)
    if num > len(dataset):
        raise ValueError(f"--num {num} but the data ({', '.join(map(str, paths))}) holds {len(dataset)} clips")
    grid = token_grid(data.frames_per_clip, data.crop_size, cfg.model.patch_size, cfg.model.tubelet_size)
    collator = MaskCollator(build_mask_generators(cfg.masks, grid), seed=seed)
    return collator([dataset[i] for i in range(num)])


def load_objective(checkpoint: str | Path, device: str = "cpu") -> tuple[Objective, Config]:
    """The objective a pre-training checkpoint was written by, with its weights, in eval mode, and its config."""
    from vjm.train.checkpoint import load_checkpoint

    path = Path(checkpoint)
    state = load_checkpoint(path)
    missing = [key for key in ("config", "models") if key not in state]
    if missing:
        raise ValueError(f"{path} lacks {missing}: it is not a vjm pre-training checkpoint (it has {sorted(state)})")
    cfg = config_from_dict(state["config"], where=f"{path} (saved config)")
    objective = build_objective(cfg)
    for name, module in objective.checkpoint_modules().items():
        if name not in state["models"]:
            raise ValueError(f"{path} holds no {name!r} (it has {sorted(state['models'])})")
        module.load_state_dict(state["models"][name])
    return objective.to(device).eval(), cfg


def draw(checkpoint: str | Path, out: str | Path, num: int = 4, seed: int = 0, device: str = "cpu") -> list[Path]:
    """Write the objective's pictures of ``num`` clips; one picture goes to ``out``, several to
    ``<out stem>_<name>.png``. Returns the paths written."""
    if num < 1:
        raise ValueError(f"--num must be at least 1, got {num}")
    out = Path(out)
    if not out.parent.is_dir():
        raise FileNotFoundError(f"cannot write {out}: folder {out.parent} does not exist")
    objective, cfg = load_objective(checkpoint, device)
    batch = picture_batch(cfg, num, seed)
    from vjm.train.engine import to_device

    with torch.no_grad():
        images = objective.images(to_device(batch, torch.device(device)))
    if not images:
        raise ValueError(f"objective {objective.name!r} draws no pictures (only objectives that reconstruct "
                         "their input do, such as 'mae')")
    if len(images) == 1:
        return [save_png(next(iter(images.values())), out)]
    return [save_png(picture, out.with_name(f"{out.stem}_{name}.png")) for name, picture in images.items()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Draw a pre-training checkpoint's pictures (MAE: input, mask, "
                                                 "reconstruction) as a PNG.")
    parser.add_argument("--checkpoint", required=True, help="a pre-training checkpoint, e.g. runs/mae_tiny/latest.pt")
    parser.add_argument("--out", default="reconstruction.png", help="PNG file to write")
    parser.add_argument("--num", type=int, default=4, help="clips to draw")
    parser.add_argument("--seed", type=int, default=0, help="seed of the masks")
    parser.add_argument("--device", default="cpu")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        paths = draw(args.checkpoint, args.out, args.num, args.seed, args.device)
    except (ValueError, FileNotFoundError) as error:
        raise SystemExit(f"vjm.objectives.show: {error}") from None
    for path in paths:
        print(path)


if __name__ == "__main__":
    main()
