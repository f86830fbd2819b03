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


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.AdamW:
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [
        {"params": [p for n, p in named if decays(n, p)], "decay": True},
        {"params": [p for n, p in named if not decays(n, p)], "decay": False, "weight_decay": 0.0},
    ]
    # On the GPU, one fused kernel per step instead of several multi-tensor launches per parameter
    # group: the V-JEPA step of a Tiny model is bound by the host's launches (docs/PERFORMANCE.md).
    fused = bool(named) and all(p.is_cuda for _, p in named)
    return torch.optim.AdamW(groups, lr=cfg.start_lr, betas=tuple(cfg.betas), eps=cfg.eps,
                             weight_decay=cfg.weight_decay, fused=fused or None)


def cosine(start: float, end: float, progress: float) -> float:
    progress = min(max(progress, 0.0), 1.0)
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * progress))


class Schedules:
    """Learning rate (linear warmup, then cosine to final_lr) and weight decay (cosine)."""

    def __init__(self, cfg: OptimConfig, total_steps: int):
        self.cfg, self.total_steps = cfg, max(total_steps, 1)

    def lr(self, step: int) -> float:
        cfg = self.cfg
        if step < cfg.warmup_steps:
            return cfg.start_lr + (cfg.lr - cfg.start_lr) * step / cfg.warmup_steps
        decay_steps = max(self.total_steps - cfg.warmup_steps, 1)
        return cosine(cfg.lr, cfg.final_lr, (step - cfg.warmup_steps) / decay_steps)

    def weight_decay(self, step: int) -> float:
        return cosine(self.cfg.weight_decay, self.cfg.final_weight_decay, step / self.total_steps)

    def apply(self, optimizer: torch.optim.Optimizer, step: int) -> tuple[float, float]:
        lr, wd = self.lr(step), self.weight_decay(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
            if group.get("decay", False):
                group["weight_decay"] = wd
        return lr, wd
