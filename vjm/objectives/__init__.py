"""Pre-training objectives as registered plugins: each is one file that declares its config
section, its encoders and what it needs (vjm.objectives.base.Objective).

    objective = build_objective(cfg)        # the class registered as cfg.objective.name
    loss, metrics = objective(batch)

Adding an objective is a file here that defines an Objective subclass decorated with
``@register_objective(name, ConfigDataclass)``, an import line below, and a config.
"""

from .base import Objective, build_objective
from .registry import objective_class, objective_configs, objective_names, register_objective

# Importing the objectives registers them.
from .arm import ARM, ARMConfig  # noqa: E402
from .mae import MAE, MAEConfig  # noqa: E402
from .mfd import MFD, MFDConfig  # noqa: E402
from .supervised import Supervised, SupervisedConfig  # noqa: E402
from .vjepa import VJEPA, VJEPAConfig  # noqa: E402

__all__ = ["ARM", "ARMConfig", "MAE", "MAEConfig", "MFD", "MFDConfig", "Objective", "Supervised", "SupervisedConfig",
           "VJEPA", "VJEPAConfig", "build_objective", "objective_class", "objective_configs", "objective_names",
           "register_objective"]
