"""Regularisers: terms added to any objective's loss, written once for all of them.

A config lists them (``regularizers: [{kind: vicreg, apply_to: context, var_weight: 1.0}]``); an
objective exposes named tensors (V-JEPA: ``context``, the context encoder's tokens) and calls its
``regularizers`` on them; each regulariser picks the tensor its ``apply_to`` names. A regulariser
that adds no loss term (SLWS, ``{kind: slws, rate: 0.1}``) changes the objective's trained encoder
instead, when the objective is built (``Regularizer.attach``).
"""

from vjm.regularizers.base import Regularizer, Regularizers
from vjm.regularizers.registry import build_regularizers, register_regularizer, regularizer_kinds

# Importing the regularisers registers their kinds.
from vjm.regularizers.slws import LayerShuffle  # noqa: E402
from vjm.regularizers.vicreg import VICReg  # noqa: E402

__all__ = ["LayerShuffle", "Regularizer", "Regularizers", "VICReg", "build_regularizers", "register_regularizer",
           "regularizer_kinds"]
