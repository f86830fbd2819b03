"""AdamW with parameter groups, and the schedules of one run (functions of the step)."""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from vjm.config import OptimConfig

NO_DECAY_NAMES = ("mask_tokens", "cls_token", "pos_embed")


def decays(name: str, param: nn.Parameter) -> bool:
    """Weight decay applies to weight matrices and kernels, not to biases, norms, A_log, D or
    learned tokens."""
    if param.ndim <= 1 or getattr(param, "_no_weight_decay", False):
        return False
    return not any(part in name for part in NO_DECAY_NAMES)


def decay_groups(model: nn.Module, **options) -> list[dict]:
    """The trainable parameters of ``model`` as two AdamW groups: those that ``decays`` (marked
    ``"decay": True``) and the rest (``weight_decay`` 0). ``options`` (lr, weight_decay...) go to both."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    return [
        {"params": [p for n, p in named if decays(n, p)], "decay": True, **options},
        {"params": [p for n, p in named if not decays(n, p)], "decay": False, **options, "weight_decay": 0.0},
    ]


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.AdamW:
    groups = decay_groups(model)
    params = [p for group in groups for p in group["params"]]
    # On the GPU, one fused kernel per step instead of several multi-tensor launches per parameter
    # group: the V-JEPA step of a Tiny model is bound by the host's launches (docs/PERFORMANCE.md).
    fused = bool(params) and all(p.is_cuda for p in params)
    return torch.optim.AdamW(groups, lr=cfg.start_lr, betas=tuple(cfg.betas), eps=cfg.eps,
                             weight_decay=cfg.weight_decay, fused=fused or None)


def cosine(start: float, end: float, progress: float) -> float:
    progress = min(max(progress, 0.0), 1.0)
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_cosine(step: int, total_steps: int, warmup_steps: int, start: float, peak: float, end: float) -> float:
    """Linear warmup from ``start`` (at step 0) to ``peak`` (at ``warmup_steps``), then cosine down
    to ``end`` at ``total_steps``: pre-training's learning rate, and the probe's (as a factor)."""
    if step < warmup_steps:
        return start + (peak - start) * step / warmup_steps
    decay_steps = max(total_steps - warmup_steps, 1)
    return cosine(peak, end, (step - warmup_steps) / decay_steps)


class Schedules:
    """Learning rate (linear warmup, then cosine to final_lr) and weight decay (cosine)."""

    def __init__(self, cfg: OptimConfig, total_steps: int):
        self.cfg, self.total_steps = cfg, max(total_steps, 1)

    def lr(self, step: int) -> float:
        cfg = self.cfg
        return warmup_cosine(step, self.total_steps, cfg.warmup_steps, cfg.start_lr, cfg.lr, cfg.final_lr)

    def weight_decay(self, step: int) -> float:
        return cosine(self.cfg.weight_decay, self.cfg.final_weight_decay, step / self.total_steps)

    def apply(self, optimizer: torch.optim.Optimizer, step: int) -> tuple[float, float]:
        lr, wd = self.lr(step), self.weight_decay(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
            if group.get("decay", False):
                group["weight_decay"] = wd
        return lr, wd
