"""Objectives by name, the way masks are: ``@register_objective("vjepa", VJEPAConfig)`` on the class.

Registering an objective also registers its config section, so ``objective: {name: vjepa, ...}`` in a
YAML is checked against the objective's own dataclass, with the same nearest-key errors as every
other section.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import TYPE_CHECKING, Callable

from vjm.config import ObjectiveConfig

if TYPE_CHECKING:
    from .base import Objective

_OBJECTIVES: dict[str, type[Objective]] = {}


def register_objective(name: str, config: type[ObjectiveConfig]) -> Callable[[type[Objective]], type[Objective]]:
    """Class decorator: the objective ``name`` is this class, configured by the dataclass ``config``."""
    if not (isinstance(config, type) and issubclass(config, ObjectiveConfig) and dataclasses.is_dataclass(config)):
        raise TypeError(f"objective {name!r}: its config must be a dataclass subclassing vjm.config.ObjectiveConfig")

    def register(cls: type[Objective]) -> type[Objective]:
        if name in _OBJECTIVES:
            raise ValueError(f"objective {name!r} is already registered by {_OBJECTIVES[name].__name__}")
        if cls.eval_encoder not in cls.encoders:
            raise ValueError(f"objective {name!r}: eval_encoder {cls.eval_encoder!r} is not one of its encoders "
                             f"{cls.encoders}")
        if config().name != name:
            raise ValueError(f"objective {name!r}: {config.__name__}.name must default to {name!r} "
                             f"(redeclare it: name: str = param({name!r}, ...))")
        cls.name, cls.config_class = name, config
        _OBJECTIVES[name] = cls
        return cls

    return register


def _load_builtin() -> None:
    # Importing the package registers the objectives that ship with vjm.
    import vjm.objectives  # noqa: F401


def objective_names() -> list[str]:
    _load_builtin()
    return sorted(_OBJECTIVES)


def objective_configs() -> dict[str, type[ObjectiveConfig]]:
    """{name: config dataclass}: the schema of each objective's section."""
    _load_builtin()
    return {name: cls.config_class for name, cls in _OBJECTIVES.items()}


def objective_class(name: str) -> type[Objective]:
    """The class registered as ``name``; its class attributes say which children are encoders."""
    _load_builtin()
    if name not in _OBJECTIVES:
        near = difflib.get_close_matches(str(name), list(_OBJECTIVES), n=1)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        raise ValueError(f"unknown objective {name!r}{hint} Registered: {', '.join(sorted(_OBJECTIVES))}")
    return _OBJECTIVES[name]
