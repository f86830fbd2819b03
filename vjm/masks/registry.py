"""Mask generators by name: ``build_mask_generator("multiblock", grid, num_blocks=8, ...)``."""

from __future__ import annotations

import difflib
from dataclasses import fields
from typing import Callable, Mapping, Optional, Sequence

from vjm.masks.base import GridError, MaskGenerator
from vjm.masks.grid import check_grid

_GENERATORS: dict[str, type[MaskGenerator]] = {}


def register_mask(kind: str) -> Callable[[type[MaskGenerator]], type[MaskGenerator]]:
    """Class decorator that makes a MaskGenerator buildable by ``kind``."""

    def register(cls: type[MaskGenerator]) -> type[MaskGenerator]:
        if kind in _GENERATORS:
            raise ValueError(f"mask kind {kind!r} is already registered by {_GENERATORS[kind].__name__}")
        cls.kind = kind
        _GENERATORS[kind] = cls
        return cls

    return register


def mask_kinds() -> list[str]:
    return sorted(_GENERATORS)


def mask_parameters(kind: str) -> list[str]:
    """The keyword parameters of ``kind`` (the grid comes from the data and model config)."""
    return sorted(f.name for f in fields(_GENERATORS[kind]) if f.init and f.name != "grid")


def _suggest(name: str, valid: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, valid, n=1)
    return f"; did you mean {close[0]!r}?" if close else ";"


def _build(kind: str, grid, params: Mapping, where: Optional[str]) -> MaskGenerator:
    prefix = f"{where}: " if where else ""
    if not isinstance(kind, str) or kind not in _GENERATORS:
        kinds = mask_kinds()
        hint = _suggest(str(kind), kinds)
        raise ValueError(f"{prefix}unknown mask kind {kind!r}{hint} valid kinds: {', '.join(kinds)}")
    valid = mask_parameters(kind)
    for name in params:
        if name not in valid:
            hint = _suggest(str(name), valid)
            raise ValueError(f"{prefix}unknown parameter {name!r} for kind {kind!r}{hint} valid: {', '.join(valid)}")
    try:
        return _GENERATORS[kind](grid=check_grid(grid), **params)
    except ValueError as error:
        refused = GridError if isinstance(error, GridError) else ValueError  # callers may explain the grid
        raise refused(f"{prefix}kind {kind!r}: {error}") from None


def build_mask_generator(kind: str, grid, where: Optional[str] = None, **params) -> MaskGenerator:
    """Build the generator registered as ``kind`` over the (T', H', W') token ``grid``.

    Unknown kinds, unknown parameters and out-of-range values raise a ValueError that names the
    culprit, lists what is valid, and starts with ``where`` (e.g. "masks[1]") when given.
    """
    return _build(kind, grid, params, where)


def build_mask_generators(mask_specs: Sequence[Mapping], grid) -> list[MaskGenerator]:
    """Build one generator per config entry ``{"kind": ..., **params}``; errors name ``masks[i]``."""
    if isinstance(mask_specs, (str, bytes, Mapping)) or not isinstance(mask_specs, Sequence):
        raise ValueError(f"masks must be a list of {{kind: ..., <params>}} entries, got {type(mask_specs).__name__}")
    generators = []
    for i, spec in enumerate(mask_specs):
        where = f"masks[{i}]"
        if not isinstance(spec, Mapping):
            raise ValueError(f"{where}: must be a mapping with a 'kind' and its parameters, got {spec!r}")
        if "kind" not in spec:
            raise ValueError(f"{where}: missing 'kind'; valid kinds: {', '.join(mask_kinds())}")
        params = {key: value for key, value in spec.items() if key != "kind"}
        generators.append(_build(spec["kind"], grid, params, where))
    return generators
