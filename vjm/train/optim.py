"""AdamW with parameter groups, and the schedules of one run (functions of the step)."""

from __future__ import annotations

import math
import re

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


# A parameter of block i of an encoder: "...blocks.<i>." (VideoMamba's and ViT's stacks alike).
_BLOCK = re.compile(r"(?:^|\.)blocks\.(\d+)\.")


def encoder_layers(model: nn.Module, encoder: str) -> tuple[dict[str, int], int]:
    """({trainable parameter name: layer}, number of blocks L) for layer-wise lr decay.

    Layers count along the forward pass of child ``encoder``: 0 for its parameters before its first
    block (patch embedding, tokens), i + 1 for block i, L + 1 for everything after the blocks (the
    encoder's final norm, a head) and for every parameter outside the encoder. Read from the
    parameter names and their order, so any encoder whose blocks are a ``blocks`` list is covered.
    """
    if not isinstance(getattr(model, encoder, None), nn.Module):
        raise ValueError(f"layer-wise lr decay needs the encoder {encoder!r} as a child of {type(model).__name__}")
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    block_of = {n: int(m.group(1)) for n, _ in named if n.startswith(f"{encoder}.") and (m := _BLOCK.search(n))}
    if not block_of:
        raise ValueError(f"optim.layer_decay: the encoder {encoder!r} of {type(model).__name__} has no 'blocks' list "
                         "to decay over; set optim.layer_decay = 1")
    depth = max(block_of.values()) + 1
    layers, seen_block = {}, False
    for name, _ in named:
        if name in block_of:
            seen_block = True
            layers[name] = block_of[name] + 1
        elif name.startswith(f"{encoder}.") and not seen_block:
            layers[name] = 0
        else:
            layers[name] = depth + 1
    return layers, depth


def layer_decay_groups(model: nn.Module, layer_decay: float, encoder: str = "encoder") -> list[dict]:
    """decay_groups split by layer, each with ``lr_scale`` = layer_decay^(L + 1 - layer) (BEiT's layer-wise
    decay; layers as encoder_layers counts them). Weight decay follows ``decays`` within every layer.

    timm's param_groups_layer_decay needs a model with timm's group_matcher and decides weight decay by
    name and ndim only (A_log is a matrix), so the groups are made here."""
    layers, depth = encoder_layers(model, encoder)
    groups: dict[tuple[int, bool], dict] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        layer, decay = layers[name], decays(name, param)
        group = groups.setdefault((layer, decay), {"params": [], "decay": decay, "layer": layer,
                                                   "lr_scale": layer_decay ** (depth + 1 - layer)})
        if not decay:
            group["weight_decay"] = 0.0
        group["params"].append(param)
    return [groups[key] for key in sorted(groups)]


def split_at_encoder(groups: list[dict], model: nn.Module, encoder: str, head_lr_scale: float,
                     option: str) -> list[dict]:
    """Each group split in two: the parameters of child ``encoder`` as they were, marked
    ``"in_encoder": True`` (for ``optim.encoder_frozen_steps``), and the others (a head) with their
    ``lr_scale`` multiplied by ``head_lr_scale``. ``option`` names the settings that asked, for errors."""
    child = getattr(model, encoder, None)
    if not isinstance(child, nn.Module):
        raise ValueError(f"optim.{option} needs the encoder {encoder!r} as a child of {type(model).__name__}; "
                         f"leave optim.{option} at the default")
    if not any(p.requires_grad for p in child.parameters()):  # e.g. V-JEPA's evaluated encoder, its EMA target
        raise ValueError(f"optim.{option}: the evaluated encoder {encoder!r} of {type(model).__name__} is not "
                         f"trained, so every trained parameter is outside it; leave optim.{option} at the default")
    inside = {id(p) for p in child.parameters()}
    split = []
    for group in groups:
        for own in (True, False):
            params = [p for p in group["params"] if (id(p) in inside) == own]
            if params:
                factor = 1.0 if own else head_lr_scale
                split.append({**group, "params": params, "lr_scale": group.get("lr_scale", 1.0) * factor,
                              "in_encoder": own})
    return split


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.AdamW:
    """AdamW over ``decay_groups``, or ``layer_decay_groups`` of the model's ``eval_encoder`` (an
    objective's) when ``cfg.layer_decay`` < 1; the parameters outside that encoder at
    ``cfg.head_lr_scale`` times their rate, and the encoder's marked for ``cfg.encoder_frozen_steps``."""
    encoder = getattr(model, "eval_encoder", "encoder")
    if cfg.layer_decay < 1:
        groups = layer_decay_groups(model, cfg.layer_decay, encoder)
    else:
        groups = decay_groups(model)
    asked = [name for name, value in (("head_lr_scale", cfg.head_lr_scale != 1),
                                      ("encoder_frozen_steps", cfg.encoder_frozen_steps)) if value]
    if asked:
        groups = split_at_encoder(groups, model, encoder, cfg.head_lr_scale, " and optim.".join(asked))
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

    def encoder_factor(self, step: int) -> float:
        """The evaluated encoder's lr factor: 0 during ``encoder_frozen_steps`` (its weights, decay
        included, stay put while a new head learns on its features), then a linear warmup of its own,
        so that it does not start at the schedule's rate of that step at once."""
        frozen, warmup = self.cfg.encoder_frozen_steps, self.cfg.warmup_steps
        if step < frozen:
            return 0.0
        if not frozen or not warmup:
            return 1.0
        return min(1.0, (step - frozen + 1) / warmup)

    def apply(self, optimizer: torch.optim.Optimizer, step: int) -> tuple[float, float]:
        """Set every group's lr (times its ``lr_scale``, layer-wise decay and a head's scale, and the
        encoder's ``encoder_factor``) and decayed weight decay; returns the unscaled (lr, weight decay)."""
        lr, wd = self.lr(step), self.weight_decay(step)
        encoder = self.encoder_factor(step)
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0) * (encoder if group.get("in_encoder") else 1.0)
            if group.get("decay", False):
                group["weight_decay"] = wd
        return lr, wd
