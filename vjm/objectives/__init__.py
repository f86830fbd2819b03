"""Objectives turn a batch into (loss, metrics); the engine does not know which one it runs.

An objective is an nn.Module with `forward(batch) -> (loss, metrics)` and, optionally,
`after_optimizer_step(progress) -> metrics` (e.g. an EMA update). Its child modules are what a
checkpoint stores under "models".
"""

from __future__ import annotations

from typing import Callable

import torch.nn as nn

from vjm.config import Config
from vjm.models import Predictor
from vjm.train.checkpoint import build_encoder

from .vjepa import VJEPA


def build_vjepa(cfg: Config) -> VJEPA:
    encoder = build_encoder(cfg)
    pred = cfg.predictor
    predictor = Predictor(
        encoder.embed_dim, width=pred.width, depth=pred.depth, kind=pred.kind, num_heads=pred.num_heads,
        num_mask_tokens=len(cfg.masks), scan_backend=cfg.model.scan_backend, merge=cfg.model.bidirectional_merge,
    )
    obj = cfg.objective
    return VJEPA(encoder, predictor, loss=obj.loss, var_weight=obj.var_weight, var_form=obj.var_form,
                 target_layernorm=obj.target_layernorm, ema_momentum=tuple(cfg.optim.ema_momentum),
                 context_var_weight=obj.context_var_weight, context_cov_weight=obj.context_cov_weight)


OBJECTIVES: dict[str, Callable[[Config], nn.Module]] = {"vjepa": build_vjepa}


def build_objective(cfg: Config) -> nn.Module:
    name = cfg.objective.name
    if name not in OBJECTIVES:
        raise ValueError(f"objective.name: unknown objective {name!r}; choose one of {sorted(OBJECTIVES)}")
    return OBJECTIVES[name](cfg)
