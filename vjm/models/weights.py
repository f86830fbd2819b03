"""Saved weights into a model built from a config, refused in one line when they belong to another.

PyTorch's own refusal of a checkpoint of another size lists every tensor (hundreds of lines for a
VideoMamba). What a person needs is which setting differs: the checkpoint's saved model section is
compared with this config's first; when they agree (the weights are of another predictor, say, or
were edited) the tensors that do not fit are summarised instead.

    load_weights(encoder, state["models"]["encoder"], source="runs/a/latest.pt ('encoder')",
                 saved_model=state["config"]["model"], model=cfg.model, remedy="start a new run folder")
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn as nn

from vjm.config import ModelConfig

__all__ = ["SHAPE_KEYS", "load_weights", "model_differences", "weights_mismatch"]

# The model keys that change which tensors a model has or their shapes.
SHAPE_KEYS = ("name", "embed_dim", "depth", "patch_size", "tubelet_size")


def _show(value: Any) -> str:
    return "null (the size's own)" if value is None else str(value)


def model_differences(saved: Mapping[str, Any], model: ModelConfig) -> tuple[str, str] | None:
    """(the checkpoint's values, this config's values) of the shape keys that differ, or None."""
    keys = [k for k in SHAPE_KEYS if k in saved and saved[k] != getattr(model, k)]
    if not keys:
        return None
    return (" ".join(f"model.{k}={_show(saved[k])}" for k in keys),
            " ".join(f"model.{k}={_show(getattr(model, k))}" for k in keys))


def _example(names: list[str]) -> str:
    return f" (e.g. {names[0]!r})" if names else ""


def weights_mismatch(module: nn.Module, weights: Mapping[str, Any]) -> str | None:
    """One line on the tensors of ``weights`` that do not fit ``module``, or None when all fit."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in weights]
    unexpected = [k for k in weights if k not in expected]
    reshaped = [k for k in expected if k in weights and isinstance(weights[k], torch.Tensor)
                and weights[k].shape != expected[k].shape]
    if not (missing or unexpected or reshaped):
        return None
    parts = []
    if reshaped:
        k = reshaped[0]
        parts.append(f"{len(reshaped)} of {len(expected)} tensors differ in shape (e.g. {k!r}: "
                     f"{list(weights[k].shape)} in the checkpoint, {list(expected[k].shape)} here)")
    if missing:
        parts.append(f"{len(missing)} are missing{_example(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} are not this model's{_example(unexpected)}")
    return ", ".join(parts)


def load_weights(module: nn.Module, weights: Mapping[str, Any], *, source: str, model: ModelConfig,
                 saved_model: Mapping[str, Any] | None, remedy: str) -> None:
    """Load ``weights`` strictly into ``module``; a ValueError of one line when they do not fit.

    ``source`` names the weights (a checkpoint and its child), ``saved_model`` is the model section
    of the config they were trained with (None when unknown), ``remedy`` what the person can do.
    """
    mismatch = weights_mismatch(module, weights)
    if mismatch is not None:
        differences = model_differences(saved_model, model) if saved_model is not None else None
        if differences is not None:
            theirs, ours = differences
            raise ValueError(f"{source} was trained with {theirs}; this config has {ours}: its weights do not "
                             f"fit: {mismatch}. {remedy}")
        raise ValueError(f"{source}: its weights do not fit: {mismatch}. {remedy}")
    module.load_state_dict(weights, strict=True)
