"""What every objective is to the engine, the checkpoints and the evaluations.

An objective is an nn.Module whose ``forward(batch) -> (loss, metrics)`` turns a batch (a dict of
tensors; "masks" only when its config section sets ``needs_masks``) into a scalar loss and a dict
of scalar metrics, which the engine averages over micro-batches and processes. Everything else
about it is declared here, so that nothing outside its own file knows its name.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn as nn

from vjm.config import Config, ObjectiveConfig
from vjm.regularizers import Regularizers, build_regularizers


class Objective(nn.Module):
    # Set by @register_objective.
    name: ClassVar[str]
    config_class: ClassVar[type[ObjectiveConfig]]
    # Children that are encoders (evaluations may take any of them), and the one evaluated by default.
    encoders: ClassVar[tuple[str, ...]] = ("encoder",)
    eval_encoder: ClassVar[str] = "encoder"
    # The encoder the optimiser trains (V-JEPA's context encoder, not its EMA target; MFD's student, not
    # its frozen teacher): regularisers that change a model (SLWS) apply to it alone.
    trained_encoder: ClassVar[str] = "encoder"
    # True when the encoder's token order is what hides the targets (ARM's causal scan): nothing may reorder it.
    causal: ClassVar[bool] = False

    def __init__(self, regularizers: Regularizers | None = None):
        super().__init__()
        # A plain attribute, not a child: regularisers hold no weights and are not checkpointed.
        self.regularizers = regularizers if regularizers is not None else Regularizers([])

    @classmethod
    def from_config(cls, cfg: Config) -> "Objective":
        raise NotImplementedError(f"objective {cls.__name__} must define from_config(cfg)")

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError(f"objective {type(self).__name__} must define forward(batch)")

    def after_optimizer_step(self, progress: float) -> dict[str, float]:
        """Per-step work after the optimiser (an EMA update, say); ``progress`` = step / total steps.

        Returns values of a schedule (logged as they are, not averaged over processes)."""
        return {}

    def images(self, batch: dict) -> dict[str, torch.Tensor]:
        """Pictures of what the objective does with ``batch`` (reconstructions, say): {name: (3, H, W)
        in [0, 1]}. The engine calls it on a training batch, in eval mode and without gradients, every
        ``train.image_every`` steps and writes the pictures to TensorBoard. None by default."""
        return {}

    def checkpoint_modules(self) -> dict[str, nn.Module]:
        """The children a checkpoint stores under "models" (all of them unless an objective says
        otherwise, e.g. a frozen teacher that is loaded from its own file)."""
        return dict(self.named_children())


def build_objective(cfg: Config) -> Objective:
    """The objective that ``cfg.objective.name`` names, built from the config, with its regularisers."""
    from .registry import objective_class

    objective = objective_class(cfg.objective.name).from_config(cfg)
    objective.regularizers = build_regularizers(cfg.regularizers)
    objective.regularizers.attach(objective)
    return objective
