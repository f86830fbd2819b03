"""Named model constructors, timm-style: `build("videomamba_tiny", drop_path=0.1)`."""

from __future__ import annotations

import difflib
from typing import Callable

import torch.nn as nn

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    if fn.__name__ in _REGISTRY:
        raise ValueError(f"model {fn.__name__!r} is registered twice")
    _REGISTRY[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def build(name: str, **overrides) -> nn.Module:
    """Build a registered model; keyword overrides replace the size's defaults."""
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, _REGISTRY, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown model {name!r}{hint} Registered models: {', '.join(list_models())}")
    try:
        return _REGISTRY[name](**overrides)
    except TypeError as exc:
        raise TypeError(f"building model {name!r} with {sorted(overrides)}: {exc}") from exc
