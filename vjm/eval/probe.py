"""The attentive probe: classifiers trained on the tokens of a frozen encoder, side by side.

    encoder, info = load_frozen_encoder(checkpoint)            # vjm.eval.frozen
    result = run_probe(load_eval_config(path), encoder, info)  # result.top1, result.results_path

One attentive classifier per (lr, weight decay) pair of the config trains on the same tokens, with
pre-training's AdamW parameter groups and warmup + cosine learning rate (vjm.train.optim).
Evaluation averages the predictions of the views (and of the segments, when they are classified
separately). The state is saved every epoch and a rerun resumes it; results (``top1``, ``top5`` in
percent, of the best head, and every head's) go to results.json. The best head is picked on held-out
training clips where data.holdout_fraction keeps some, and with train.early_stopping each head is
read at its best epoch on them.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from vjm.train.distributed import resolve_device
from vjm.train.optim import decay_groups, warmup_cosine

from .config import EvalConfig, eval_config_to_yaml
from .data import EvalData, build_eval_data
from .features import extract_features
from .frozen import EncoderInfo
from .pooler import AttentiveClassifier, ProbeHeads, average_predictions
from .probe_state import STATE_FILE, ProbeResult, load_state, pick_head, read_record, save_state, write_results
from .tokens import TokenSource, group_tokens

logger = logging.getLogger(__name__)

__all__ = ["build_heads", "build_probe_optimizer", "default_output_dir", "evaluate", "run_probe", "train_epoch"]


def default_output_dir(cfg: EvalConfig, info: EncoderInfo) -> Path:
    """run.folder if given; else probe_<name> beside the checkpoint (or under runs/), suffixed with the
    encoder unless it is the one its objective evaluates by default (``_random_init`` for the control)."""
    if cfg.run.folder is not None:
        return Path(cfg.run.folder)
    suffix = "" if not info.random_init and info.is_default else f"_{info.which}"
    parent = Path(info.checkpoint).parent if info.checkpoint else Path("runs")
    return parent / f"probe_{cfg.run.name}{suffix}"


# ------------------------------------------------------------------------------------------ heads and optimiser


def build_heads(cfg: EvalConfig, embed_dim: int, num_classes: int) -> ProbeHeads:
    """One attentive classifier per (lr, weight decay) of the sweep, all initialised from run.seed."""
    p = cfg.probe
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.run.seed)
        return ProbeHeads(AttentiveClassifier(embed_dim, num_classes, num_queries=p.num_queries,
                                              num_heads=p.num_heads, mlp_ratio=p.mlp_ratio, depth=p.depth,
                                              feature_norm=p.feature_norm)
                          for _ in cfg.optim.grid)


def build_probe_optimizer(heads: ProbeHeads, cfg: EvalConfig) -> torch.optim.AdamW:
    """AdamW with pre-training's two parameter groups for each head, at that head's lr and weight decay.

    ``base_lr`` keeps each head's peak lr, which the schedule scales (set_lr)."""
    groups = []
    for head, (lr, weight_decay) in zip(heads, cfg.optim.grid):
        groups += decay_groups(head, lr=lr, base_lr=lr, weight_decay=weight_decay)
    return torch.optim.AdamW(groups, betas=cfg.optim.betas)


def set_lr(optimizer: torch.optim.Optimizer, factor: float) -> None:
    """Every head at ``factor`` times its own peak learning rate."""
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * factor


# ------------------------------------------------------------------------------------------ train and evaluate


class HeadMetrics:
    """Per-head running loss and top-1 / top-5 counts."""

    def __init__(self, num_heads: int):
        self.loss = torch.zeros(num_heads, dtype=torch.float64)
        self.top1 = torch.zeros(num_heads, dtype=torch.float64)
        self.top5 = torch.zeros(num_heads, dtype=torch.float64)
        self.count = 0
        self.batches = 0

    def update(self, probs: Sequence[torch.Tensor], labels: torch.Tensor, losses: Sequence[float] = ()) -> None:
        for i, p in enumerate(probs):
            k = min(5, p.shape[-1])
            # A diverged head (non-finite outputs) scores nothing, rather than whatever topk makes of NaN.
            hits = (p.topk(k, dim=-1).indices == labels[:, None]) & p.isfinite().all(dim=-1, keepdim=True)
            self.top1[i] += hits[:, 0].sum().item()
            self.top5[i] += hits.any(dim=-1).sum().item()
        for i, loss in enumerate(losses):
            self.loss[i] += loss
        self.count += len(labels)
        self.batches += 1

    def summary(self) -> list[dict[str, float]]:
        n, b = max(self.count, 1), max(self.batches, 1)
        return [{"loss": float(self.loss[i] / b), "top1": float(100 * self.top1[i] / n),
                 "top5": float(100 * self.top5[i] / n)} for i in range(len(self.top1))]


def train_epoch(heads: ProbeHeads, optimizer: torch.optim.Optimizer, source: TokenSource, cfg: EvalConfig,
                epoch: int, total_steps: int) -> list[dict[str, float]]:
    heads.train()
    metrics = HeadMetrics(len(heads))
    steps, warmup = len(source), round(cfg.optim.warmup_epochs * len(source))
    started = time.monotonic()
    for i, (tokens, labels) in enumerate(source.batches(epoch)):
        # Pre-training's schedule as a factor of each head's peak: warmup from 0, cosine to final_lr_scale.
        set_lr(optimizer, warmup_cosine(epoch * steps + i, total_steps, warmup, 0.0, 1.0, cfg.optim.final_lr_scale))
        grouped, groups = group_tokens(tokens, cfg.probe.segments)
        targets = labels.repeat_interleave(groups)
        logits = heads(grouped.float())  # the probe trains in fp32 (see EvalTrainConfig.dtype)
        losses = [F.cross_entropy(x.float(), targets) for x in logits]
        optimizer.zero_grad(set_to_none=True)
        torch.stack(losses).sum().backward()  # heads share no parameters: each gets its own gradient
        if cfg.optim.clip_grad > 0:
            for head in heads:
                nn.utils.clip_grad_norm_(head.parameters(), cfg.optim.clip_grad)
        optimizer.step()
        with torch.no_grad():
            probs = [average_predictions(x.view(len(labels), groups, -1)) for x in logits]
        metrics.update(probs, labels, [loss.item() for loss in losses])
        if (i + 1) % cfg.train.log_every == 0 or i + 1 == steps:
            elapsed = time.monotonic() - started
            best = min(metrics.summary(), key=lambda h: h["loss"] if math.isfinite(h["loss"]) else math.inf)
            logger.info("epoch %d/%d step %d/%d: loss %.4f (best head), lr x%.3f, %.1f samples/s, ETA %.0fs",
                        epoch + 1, cfg.train.epochs, i + 1, steps, best["loss"],
                        optimizer.param_groups[0]["lr"] / optimizer.param_groups[0]["base_lr"],
                        metrics.count / elapsed, (steps - i - 1) * elapsed / (i + 1))
    return metrics.summary()


@torch.no_grad()
def evaluate(heads: ProbeHeads, source: TokenSource, cfg: EvalConfig) -> list[dict[str, float]]:
    """Top-1 / top-5 of every head, predictions averaged over views (and separate segments)."""
    heads.eval()
    metrics = HeadMetrics(len(heads))
    for tokens, labels in source.batches(0):
        grouped, groups = group_tokens(tokens, cfg.probe.segments)
        logits = heads(grouped.float())
        targets = labels.repeat_interleave(groups)
        metrics.update([average_predictions(x.view(len(labels), groups, -1)) for x in logits], labels,
                       [F.cross_entropy(x.float(), targets).item() for x in logits])
    return metrics.summary()


def keep_early_stopped(kept: dict[str, torch.Tensor], heads: ProbeHeads, history: list[dict]) -> None:
    """Copy into ``kept`` the weights of each head whose reading (read_record) is now the last epoch's."""
    _, epochs = read_record(history, early_stopping=True)
    for name, value in heads.state_dict().items():
        if epochs[int(name.split(".", 1)[0])] == history[-1]["epoch"]:
            kept[name] = value.detach().clone().cpu()


# ------------------------------------------------------------------------------------------ the evaluation


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if name == "bf16" and device.type == "cpu":
        logger.warning("bf16 autocast on the CPU is slow; fp32 is usually faster there")
    return {"bf16": torch.bfloat16, "fp32": torch.float32}[name]


def _sampling(cfg: EvalConfig, split: str, num_views: int) -> dict:
    """How a split's clips are made: with the encoder and the samples, the key of their cached features."""
    d = cfg.data
    return {"split": split, "frames_per_clip": d.frames_per_clip, "frame_step": d.frame_step, "fps": d.fps,
            "num_segments": d.num_segments, "num_views": num_views, "crop_size": d.crop_size}


def _make_sources(cfg: EvalConfig, encoder: nn.Module, data: EvalData, device: torch.device,
                  dtype: torch.dtype) -> dict[str, TokenSource]:
    """Token sources by split: ``train``, ``val``, and ``holdout`` (the training videos kept out to pick
    the best head on) when data.holdout_fraction holds some out."""
    d, t = cfg.data, cfg.train
    common = dict(encoder=encoder, num_segments=d.num_segments, batch_size=d.batch_size,
                  num_workers=d.num_workers, device=device, dtype=dtype, seed=cfg.run.seed, pin_memory=d.pin_memory)
    sources = {"train": TokenSource(dataset=data.train, training=True, positions=data.train_positions, **common),
               "val": TokenSource(dataset=data.val, training=False, **common)}
    if data.holdout is not None:
        sources["holdout"] = TokenSource(dataset=data.holdout, training=False, positions=data.holdout_positions,
                                         **common)
    if t.cache_features:
        extract = dict(num_segments=d.num_segments, batch_size=d.batch_size, num_workers=d.num_workers,
                       device=device, dtype=dtype, cache_dir=t.feature_cache_dir, pin_memory=d.pin_memory)
        # Features of whole datasets (the split is a choice of positions), so every probe seed shares them.
        if data.train_is_static:
            sources["train"].cached = extract_features(encoder, data.train, sampling=_sampling(cfg, "train", 1),
                                                       what="train features", **extract)
        else:
            logger.warning("train.cache_features: training clips are augmented (data.augment), so only the "
                           "validation features are cached")
        if "holdout" in sources:
            sources["holdout"].cached = (sources["train"].cached if data.holdout is data.train else extract_features(
                encoder, data.holdout, sampling=_sampling(cfg, "train", 1), what="train features", **extract))
        sources["val"].cached = extract_features(encoder, data.val, sampling=_sampling(cfg, "val", d.num_views),
                                                 what="val features", **extract)
    return sources


def run_probe(cfg: EvalConfig, encoder: nn.Module, info: EncoderInfo, out_dir: str | os.PathLike | None = None,
              device: str | torch.device = "auto", resume: bool = True) -> ProbeResult:
    """Train the probe heads on the frozen ``encoder``'s tokens, validate, write results.json; resumable."""
    device = resolve_device(device) if isinstance(device, str) else device
    dtype = resolve_dtype(cfg.train.dtype, device)
    out_dir = Path(out_dir) if out_dir is not None else default_output_dir(cfg, info)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.yaml").write_text(eval_config_to_yaml(cfg))
    encoder = encoder.to(device).eval().requires_grad_(False)
    data = build_eval_data(cfg.data, seed=cfg.run.seed)
    heads = build_heads(cfg, info.embed_dim, data.num_classes).to(device)
    optimizer = build_probe_optimizer(heads, cfg)
    history: list[dict] = []
    # With early stopping, each head's weights at the epoch it will be read at (what fine-tuning starts from).
    early_stopped: dict[str, torch.Tensor] = {}
    state_path = out_dir / STATE_FILE
    if resume and state_path.is_file():
        state = load_state(state_path, cfg, info)
        heads.load_state_dict(state["heads"])
        optimizer.load_state_dict(state["optimizer"])
        history = state["history"]
        early_stopped = state.get("early_stopped_heads", {})
        logger.info("Resumed the probe from %s after epoch %d", state_path, len(history))
    elif state_path.is_file():
        logger.info("Starting over (--no-resume): %s will be replaced", state_path)
    logger.info("Probing %s (%s %s%s) with %d head(s) on %s; output in %s", info.model, info.objective, info.which,
                f", step {info.step}" if info.step is not None else "", len(heads), device, out_dir)

    sources: dict[str, TokenSource] = {}
    total_steps = 0
    for epoch in range(len(history), cfg.train.epochs):
        if not sources:
            sources = _make_sources(cfg, encoder, data, device, dtype)
            total_steps = cfg.train.epochs * len(sources["train"])
        record: dict[str, Any] = {"epoch": epoch + 1,
                                  "train": train_epoch(heads, optimizer, sources["train"], cfg, epoch, total_steps)}
        if (epoch + 1) % cfg.train.eval_every == 0 or epoch + 1 == cfg.train.epochs:
            for split in ("holdout", "val"):
                if split in sources:
                    record[split] = evaluate(heads, sources[split], cfg)
            picked = pick_head(record)
            logger.info("epoch %d/%d: val top1 %.2f top5 %.2f (the best of %d heads on the %s clips)", epoch + 1,
                        cfg.train.epochs, record["val"][picked]["top1"], record["val"][picked]["top5"], len(heads),
                        "held-out training" if "holdout" in record else "validation")
        history.append(record)
        if cfg.train.early_stopping and "holdout" in record:
            keep_early_stopped(early_stopped, heads, history)
        save_state(state_path, {"config": cfg.to_dict(), "encoder": dataclasses.asdict(info),
                                "heads": heads.state_dict(), "optimizer": optimizer.state_dict(),
                                "history": history, "early_stopped_heads": early_stopped})
    return write_results(out_dir, cfg, info, history, data.num_classes, data)
