"""Checkpoints: written atomically, read without executing pickled code.

A checkpoint is a dict of tensors and plain Python values:

    {"format": FORMAT, "config": resolved config dict, "step": int, "epoch": int,
     "models": {"encoder": state_dict, "target_encoder": state_dict, "predictor": state_dict},
     "optimizer": ..., "ranks": [per-rank RNG state and counters], "data": ..., "masks": ...}

`torch.load(weights_only=True)` reads it, so a checkpoint from an untrusted source cannot run code.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch

from vjm.config import Config, config_from_dict
from vjm.models import build

logger = logging.getLogger(__name__)

FORMAT = "vjm-checkpoint-v1"
ENCODER_KEYS = ("target_encoder", "encoder")


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write `state` to `path` atomically: a crash mid-write leaves the previous file intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save({"format": FORMAT, **state}, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist; pass the path of a .pt file written by vjm")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise ValueError(f"checkpoint {path} could not be read safely ({type(exc).__name__}: {exc})") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"{path} is not a vjm checkpoint (format {found!r}, expected {FORMAT!r})")
    return state


def build_encoder(cfg: Config) -> torch.nn.Module:
    """The encoder a config describes (context and target encoders share it)."""
    model = cfg.model
    overrides = dict(patch_size=model.patch_size, tubelet_size=model.tubelet_size, drop_path=model.drop_path,
                     checkpoint_blocks=model.checkpoint_blocks)
    overrides.update({key: getattr(model, key) for key in ("embed_dim", "depth") if getattr(model, key) is not None})
    if not model.name.startswith("vit"):
        overrides.update(scan_backend=model.scan_backend, merge=model.bidirectional_merge)
    return build(model.name, **overrides)


def load_encoder(path: str | os.PathLike, which: str = "target_encoder",
                 map_location: str | torch.device = "cpu") -> tuple[torch.nn.Module, Config]:
    """Rebuild the encoder of a checkpoint from its saved config and load its weights."""
    if which not in ENCODER_KEYS:
        raise ValueError(f"which must be one of {ENCODER_KEYS}, got {which!r}")
    state = load_checkpoint(path, map_location)
    cfg = config_from_dict(state["config"], where=f"{path} (saved config)")
    models = state.get("models", {})
    if which not in models:
        raise KeyError(f"checkpoint {path} holds no {which!r}; it has {sorted(models)}")
    encoder = build_encoder(cfg)
    missing, unexpected = encoder.load_state_dict(models[which], strict=False)
    if missing or unexpected:
        raise ValueError(
            f"checkpoint {path}: {which} does not match model {cfg.model.name!r} "
            f"(missing {missing[:5]}, unexpected {unexpected[:5]})"
        )
    return encoder, cfg
