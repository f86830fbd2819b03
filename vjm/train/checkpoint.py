"""Checkpoints: written atomically, read without executing pickled code.

A checkpoint is a dict of tensors and plain Python values:

    {"format": FORMAT, "config": resolved config dict, "objective": its name, "step": int,
     "epoch": int, "models": {child name: state_dict, ...} (the objective's checkpoint_modules),
     "optimizer": ..., "ranks": [per-rank RNG state and counters], "data": ..., "masks": ...}

`torch.load(weights_only=True)` reads it, so a checkpoint from an untrusted source cannot run code.
Checkpoints of the first format (before objectives were plugins) are upgraded as they are read.
"""

from __future__ import annotations

import copy
import logging
import os
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger(__name__)

FORMAT = "vjm-checkpoint-v2"
FORMAT_V1 = "vjm-checkpoint-v1"


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
    found = state.get("format") if isinstance(state, dict) else type(state).__name__
    if found == FORMAT_V1:
        return upgrade_v1(state)
    if found != FORMAT:
        raise ValueError(f"{path} is not a vjm checkpoint (format {found!r}, expected {FORMAT!r})")
    return state


def upgrade_v1_config(config: dict[str, Any]) -> dict[str, Any]:
    """A first-format config dict in today's layout: V-JEPA's predictor and EMA moved into its
    objective section, its context VICReg terms into ``regularizers``."""
    config = copy.deepcopy(config)
    objective = config.setdefault("objective", {"name": "vjepa"})
    if "predictor" in config:
        objective["predictor"] = config.pop("predictor")
    if "ema_momentum" in config.get("optim", {}):
        objective["ema_momentum"] = config["optim"].pop("ema_momentum")
    var_weight = objective.pop("context_var_weight", 0.0)
    cov_weight = objective.pop("context_cov_weight", 0.0)
    if var_weight or cov_weight:
        config.setdefault("regularizers", []).append(
            {"kind": "vicreg", "apply_to": "context", "var_weight": var_weight, "cov_weight": cov_weight})
    return config


def upgrade_v1(state: dict[str, Any]) -> dict[str, Any]:
    """A first-format checkpoint (all V-JEPA) in today's format; the weights are unchanged."""
    state = {**state, "format": FORMAT, "config": upgrade_v1_config(state["config"])}
    state.setdefault("objective", state["config"]["objective"].get("name", "vjepa"))
    return state
