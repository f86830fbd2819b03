"""Regularisers by kind, built from the config's ``regularizers`` list (the masks' pattern)."""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping, Sequence
from typing import Callable

from vjm.regularizers.base import Regularizer, Regularizers

_KINDS: dict[str, type[Regularizer]] = {}


def register_regularizer(kind: str) -> Callable[[type[Regularizer]], type[Regularizer]]:
    def register(cls: type[Regularizer]) -> type[Regularizer]:
        if kind in _KINDS:
            raise ValueError(f"regulariser kind {kind!r} is already registered by {_KINDS[kind].__name__}")
        cls.kind = kind
        _KINDS[kind] = cls
        return cls

    return register


def regularizer_kinds() -> list[str]:
    return sorted(_KINDS)


def _suggest(name: str, valid: Sequence[str]) -> str:
    near = difflib.get_close_matches(name, valid, n=1)
    return f"; did you mean {near[0]!r}?" if near else ";"


def build_regularizers(specs: Sequence[Mapping]) -> Regularizers:
    """One regulariser per entry ``{kind: ..., **params}``; errors name ``regularizers[i]``."""
    items = []
    for i, spec in enumerate(specs):
        where = f"regularizers[{i}]"
        kind = spec.get("kind") if isinstance(spec, Mapping) else None
        if kind not in _KINDS:
            raise ValueError(f"{where}: unknown regulariser kind {kind!r}{_suggest(str(kind), regularizer_kinds())} "
                             f"valid kinds: {', '.join(regularizer_kinds())}")
        cls = _KINDS[kind]
        valid = [f.name for f in dataclasses.fields(cls)]
        params = {key: value for key, value in spec.items() if key != "kind"}
        for name in params:
            if name not in valid:
                raise ValueError(f"{where}: unknown parameter {name!r} for kind {kind!r}{_suggest(name, valid)} "
                                 f"valid: {', '.join(valid)}")
        try:
            items.append(cls(**params))
        except (TypeError, ValueError) as error:
            raise ValueError(f"{where}: kind {kind!r}: {error}") from None
    return Regularizers(items)
