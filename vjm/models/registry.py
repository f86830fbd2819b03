"""Named model constructors, timm-style: `build("videomamba_tiny", drop_path=0.1)`."""

from __future__ import annotations

import difflib
import inspect
import typing
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


def model_arguments(name: str) -> frozenset[str]:
    """The keyword arguments model ``name`` accepts: its constructor's, then those of the class it
    returns (following ``forwards_kwargs_to`` where a class passes ``**kwargs`` on)."""
    fn = _lookup(name)
    names: set[str] = set()
    targets: list[object] = [fn, typing.get_type_hints(fn).get("return")]
    while targets:
        target = targets.pop()
        if target is None:
            continue
        for parameter in inspect.signature(target).parameters.values():
            if parameter.kind is inspect.Parameter.VAR_KEYWORD:
                targets.append(getattr(target, "forwards_kwargs_to", None))
            elif parameter.kind is not inspect.Parameter.VAR_POSITIONAL:
                names.add(parameter.name)
    return frozenset(names)


def _lookup(name: str) -> Callable[..., nn.Module]:
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, _REGISTRY, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown model {name!r}{hint} Registered models: {', '.join(list_models())}")
    return _REGISTRY[name]


def build(name: str, weights: str | None = None, **overrides) -> nn.Module:
    """Build a registered model; keyword overrides replace the size's defaults. ``weights``: an encoder
    exported by ``python -m vjm.export`` (safetensors) to load, refused in one line when it is another
    model (vjm.models.load_exported builds the file's own)."""
    fn = _lookup(name)
    try:
        model = fn(**overrides)
    except TypeError as exc:
        raise TypeError(f"building model {name!r} with {sorted(overrides)}: {exc}") from exc
    if weights is not None:
        from .exported import load_exported_weights, model_config_of

        load_exported_weights(model, weights, model_config_of(name, overrides))
    return model
