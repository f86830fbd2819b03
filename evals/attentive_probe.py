"""Frozen evaluation: an attentive probe trained on the tokens of a frozen encoder.

    python -m evals.attentive_probe --fname configs/eval/toy_direction.yaml --checkpoint runs/vjepa_tiny/latest.pt
    python -m evals.attentive_probe --fname configs/eval/toy_direction.yaml --checkpoint ... --random-init
    python evals/attentive_probe.py --fname configs/eval/ssv2_16x2x3.yaml --checkpoint ... --set 'optim.lr=[1e-3,3e-4]'

The encoder comes from a vjm checkpoint (its EMA target encoder by default, ``--encoder context``
for the context encoder). ``--random-init`` builds the same architecture with random weights:
the control every result is compared with. The encoder is frozen and runs without autograd; one
attentive classifier per (lr, weight decay) pair of the config trains on its tokens, side by side.
Evaluation averages the predictions of the views (and of the segments, when they are classified
separately). The probe's state is saved every epoch and a rerun resumes it. Results (``top1``,
``top5`` in percent, of the best head, and every head's) are written as JSON in a folder beside
the checkpoint; the path of that file is the last line printed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evals.config import EvalConfig, eval_config_from_dict, eval_config_to_yaml, load_eval_config  # noqa: E402
from evals.data import EvalData, build_eval_data  # noqa: E402
from evals.features import CachedFeatures, encode_clips, encoder_fingerprint, extract_features  # noqa: E402
from evals.probe import AttentiveClassifier, ProbeHeads, average_predictions  # noqa: E402
from vjm.config import ConfigError, config_from_dict, load_config  # noqa: E402
from vjm.data import build_loader  # noqa: E402
from vjm.data.samplers import derive_seed  # noqa: E402
from vjm.train.checkpoint import build_encoder, load_checkpoint  # noqa: E402
from vjm.train.distributed import resolve_device  # noqa: E402

logger = logging.getLogger(__name__)

__all__ = ["EncoderInfo", "ProbeResult", "build_heads", "default_output_dir", "load_frozen_encoder", "main",
           "run_probe"]

PROBE_FORMAT = "vjm-probe-v1"
STATE_FILE = "latest.pt"
RESULTS_FILE = "results.json"
# Keys that change how a run goes, not what it computes: a resumed run may differ in them.
RESUME_FREE_KEYS = {("data", "num_workers"), ("train", "log_every"), ("train", "feature_cache_dir"),
                    ("train", "cache_features"), ("run", "folder")}


# ------------------------------------------------------------------------------------------ encoder


@dataclass(frozen=True)
class EncoderInfo:
    """Which encoder was probed: enough to name the results and to refuse resuming on another."""

    model: str
    embed_dim: int
    checkpoint: str | None  # absolute path, or None for a random encoder built from a config
    which: str  # "target_encoder" | "encoder" | "random_init"
    step: int | None  # pre-training step of the checkpoint
    fingerprint: str  # digest of the weights

    @property
    def random_init(self) -> bool:
        return self.which == "random_init"


def load_frozen_encoder(checkpoint: str | os.PathLike | None = None, which: str = "target_encoder", *,
                        random_init: bool = False, pretrain_config: str | os.PathLike | None = None,
                        seed: int = 0) -> tuple[nn.Module, EncoderInfo]:
    """The encoder to probe, frozen (eval mode, no gradients).

    From ``checkpoint``: its ``which`` encoder ("target_encoder" or "encoder"), or with
    ``random_init`` the same architecture randomly initialised (seeded by ``seed``). Without a
    checkpoint, ``random_init`` with ``pretrain_config`` (a pre-training YAML) names the architecture.
    Raises FileNotFoundError for a missing file and ValueError, saying what was wrong, for a file
    that is not a vjm checkpoint, lacks the encoder, or holds weights of another model.
    """
    if checkpoint is None:
        if not (random_init and pretrain_config is not None):
            raise ValueError("give --checkpoint PATH (a vjm pre-training checkpoint), or --random-init with "
                             "--pretrain-config YAML to build a random encoder of that config's model")
        cfg = load_config(pretrain_config)
        step = None
    else:
        encoder, cfg, step = _load_checkpoint_encoder(Path(checkpoint), which)
    if random_init:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            encoder = build_encoder(cfg)
        which = "random_init"
    encoder.eval().requires_grad_(False)
    info = EncoderInfo(model=cfg.model.name, embed_dim=int(encoder.embed_dim),
                       checkpoint=None if checkpoint is None else str(Path(checkpoint).resolve()),
                       which=which, step=step, fingerprint=encoder_fingerprint(encoder))
    return encoder, info


def _load_checkpoint_encoder(path: Path, which: str) -> tuple[nn.Module, Any, int | None]:
    """Read the checkpoint once; rebuild the encoder its config names; load ``which``'s weights strictly."""
    if which not in ("target_encoder", "encoder"):
        raise ValueError(f"which must be 'target_encoder' or 'encoder' (the context encoder), got {which!r}")
    if path.is_dir():
        raise FileNotFoundError(f"{path} is a folder; pass the checkpoint file inside it, e.g. {path / 'latest.pt'}")
    try:
        state = load_checkpoint(path)  # FileNotFoundError, or ValueError: unreadable or not a vjm checkpoint
    except ValueError as exc:
        if repr(PROBE_FORMAT) in str(exc):
            raise ValueError(f"{path} is the state of an attentive probe, not a pre-training checkpoint; "
                             "pass the checkpoint the probe was trained on") from None
        raise
    missing = [k for k in ("config", "models") if k not in state]
    if missing:
        raise ValueError(f"checkpoint {path} lacks {missing}: a vjm pre-training checkpoint holds 'config' and "
                         f"'models'; this one has {sorted(state)}")
    models = state["models"]
    if not isinstance(models, dict) or which not in models:
        found = sorted(models) if isinstance(models, dict) else type(models).__name__
        raise ValueError(f"checkpoint {path} holds no {which!r} (it has {found}); use --encoder "
                         f"{'context' if which == 'target_encoder' else 'target'} or another checkpoint")
    cfg = config_from_dict(state["config"], where=f"{path} (saved config)")
    encoder = build_encoder(cfg)
    try:
        encoder.load_state_dict(models[which], strict=True)
    except RuntimeError as exc:  # missing / unexpected keys or tensors of another shape
        detail = " ".join(str(exc).split())[:400]
        raise ValueError(f"checkpoint {path}: its {which!r} weights do not fit {cfg.model.name!r}, the model its "
                         f"config names (weights of another model?): {detail}") from None
    step = state.get("step")
    return encoder, cfg, step if isinstance(step, int) else None


def default_output_dir(cfg: EvalConfig, info: EncoderInfo) -> Path:
    """run.folder if given; else probe_<name>[_random_init|_context] beside the checkpoint (or under runs/)."""
    if cfg.run.folder is not None:
        return Path(cfg.run.folder)
    suffix = {"target_encoder": "", "encoder": "_context", "random_init": "_random_init"}[info.which]
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


def build_optimizer(heads: ProbeHeads, cfg: EvalConfig) -> torch.optim.AdamW:
    """AdamW with two groups a head: weights decayed, biases / norms / 1-d parameters not."""
    groups = []
    for head, (lr, weight_decay) in zip(heads, cfg.optim.grid):
        decay = [p for p in head.parameters() if p.ndim > 1]
        no_decay = [p for p in head.parameters() if p.ndim <= 1]
        groups.append({"params": decay, "base_lr": lr, "lr": lr, "weight_decay": weight_decay})
        groups.append({"params": no_decay, "base_lr": lr, "lr": lr, "weight_decay": 0.0})
    return torch.optim.AdamW(groups, betas=cfg.optim.betas)


def lr_factor(step: int, total: int, warmup: int, final_scale: float) -> float:
    """Linear warmup from 0, then cosine from 1 down to ``final_scale`` at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return final_scale + (1 - final_scale) * 0.5 * (1 + math.cos(math.pi * progress))


def set_lr(optimizer: torch.optim.Optimizer, factor: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * factor


# ------------------------------------------------------------------------------------------ batches of tokens


def group_tokens(tokens: torch.Tensor, segments: str) -> tuple[torch.Tensor, int]:
    """Tokens B x S x V x N x D -> (B*G x N' x D, G): what one classification sees.

    joint: each view's tokens of all segments together (G = V, N' = S*N); separate: every
    segment and view apart (G = S*V, N' = N).
    """
    b, s, v, n, d = tokens.shape
    if segments == "joint":
        return tokens.transpose(1, 2).reshape(b * v, s * n, d), v
    return tokens.reshape(b * s * v, n, d), s * v


@dataclass
class TokenSource:
    """Batches of (tokens B x S x V x N x D on the device, labels B) for an epoch: from a cache or a loader."""

    encoder: nn.Module
    dataset: Any
    num_segments: int
    batch_size: int
    num_workers: int
    device: torch.device
    dtype: torch.dtype
    seed: int
    training: bool
    cached: CachedFeatures | None = None

    def __len__(self) -> int:
        n = len(self.dataset)
        if not self.training:
            return math.ceil(n / self.batch_size)
        return max(1, n // self.batch_size)

    def batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.cached is not None:
            yield from self._cached_batches(epoch)
            return
        loader = build_loader(self.dataset, self.batch_size, self.num_workers, seed=self.seed,
                              training=self.training, drop_last=self.training and len(self.dataset) >= self.batch_size,
                              pin_memory=self.device.type == "cuda")
        loader.sampler.set_epoch(epoch)
        for batch in loader:
            clips = batch["clips"].to(self.device, non_blocking=True)
            yield encode_clips(self.encoder, clips, self.num_segments, self.dtype), batch["label"].to(self.device)

    def _cached_batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        tokens, labels = self.cached.tokens, self.cached.labels(self.dataset)
        n = len(labels)
        if self.training:  # a new order every epoch, the same after a resume
            generator = torch.Generator().manual_seed(derive_seed(self.seed, epoch))
            order = torch.randperm(n, generator=generator)[: len(self) * self.batch_size]
        else:
            order = torch.arange(n)
        for start in range(0, len(order), self.batch_size):
            index = order[start:start + self.batch_size]
            yield tokens[index].to(self.device, non_blocking=True), labels[index].to(self.device)


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
        step = epoch * steps + i
        set_lr(optimizer, lr_factor(step, total_steps, warmup, cfg.optim.final_lr_scale))
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


# ------------------------------------------------------------------------------------------ state and results


def _comparable(cfg_dict: dict) -> dict:
    return {section: {k: v for k, v in keys.items() if (section, k) not in RESUME_FREE_KEYS}
            for section, keys in cfg_dict.items()}


def save_state(path: Path, state: dict) -> None:
    """Atomic write: an interrupted save leaves the previous state intact."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save({"format": PROBE_FORMAT, **state}, tmp)
    os.replace(tmp, path)


def load_state(path: Path, cfg: EvalConfig, info: EncoderInfo) -> dict:
    """The probe state saved at ``path``, checked to belong to this config and encoder."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"probe state {path} could not be read ({type(exc).__name__}: {exc}); delete it or "
                         "pass --no-resume to start over") from exc
    if not isinstance(state, dict) or state.get("format") != PROBE_FORMAT:
        raise ValueError(f"{path} is not a probe state (format {PROBE_FORMAT!r}); delete it or pass --no-resume")
    if state["encoder"] != dataclasses.asdict(info):
        raise ValueError(f"{path} is a probe of another encoder ({state['encoder']}), not of {dataclasses.asdict(info)}; "
                         "pass --no-resume to start over, or another --output-dir")
    saved = eval_config_from_dict(state["config"], where=f"{path} (saved config)")
    old, new = _comparable(saved.to_dict()), _comparable(cfg.to_dict())
    if old != new:
        changed = sorted(f"{s}.{k}" for s in new for k in new[s] if old.get(s, {}).get(k) != new[s][k])
        raise ValueError(f"{path} was trained with another config (differs in {', '.join(changed)}); pass "
                         "--no-resume to start over, or another --output-dir")
    return state


@dataclass
class ProbeResult:
    top1: float
    top5: float
    results_path: Path
    results: dict


def write_results(out_dir: Path, cfg: EvalConfig, info: EncoderInfo, history: list[dict], num_classes: int,
                  data: EvalData) -> ProbeResult:
    last = history[-1]["val"]
    best = max(range(len(last)), key=lambda i: last[i]["top1"])
    heads = [{"lr": lr, "weight_decay": wd, "top1": last[i]["top1"], "top5": last[i]["top5"],
              "best_epoch_top1": max(h["val"][i]["top1"] for h in history if "val" in h),
              "train_loss": history[-1]["train"][i]["loss"], "train_top1": history[-1]["train"][i]["top1"]}
             for i, (lr, wd) in enumerate(cfg.optim.grid)]
    results = {"eval": cfg.run.name, "top1": last[best]["top1"], "top5": last[best]["top5"], "best_head": best,
               "chance_top1": 100.0 / num_classes, "num_classes": num_classes, "num_train": len(data.train),
               "num_val": len(data.val), "epochs": len(history), "encoder": dataclasses.asdict(info),
               "heads": heads, "history": history, "config": cfg.to_dict()}
    path = out_dir / RESULTS_FILE
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(results, indent=1))
    os.replace(tmp, path)
    return ProbeResult(results["top1"], results["top5"], path, results)


# ------------------------------------------------------------------------------------------ the evaluation


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if name == "bf16" and device.type == "cpu":
        logger.warning("bf16 autocast on the CPU is slow; fp32 is usually faster there")
    return {"bf16": torch.bfloat16, "fp32": torch.float32}[name]


def _sampling(cfg: EvalConfig, split: str, num_views: int) -> dict:
    d = cfg.data
    return {"split": split, "frames_per_clip": d.frames_per_clip, "frame_step": d.frame_step, "fps": d.fps,
            "num_segments": d.num_segments, "num_views": num_views, "crop_size": d.crop_size}


def _make_sources(cfg: EvalConfig, encoder: nn.Module, data: EvalData, device: torch.device,
                  dtype: torch.dtype) -> tuple[TokenSource, TokenSource]:
    d, t = cfg.data, cfg.train
    common = dict(encoder=encoder, num_segments=d.num_segments, batch_size=d.batch_size,
                  num_workers=d.num_workers, device=device, dtype=dtype, seed=cfg.run.seed)
    train = TokenSource(dataset=data.train, training=True, **common)
    val = TokenSource(dataset=data.val, training=False, **common)
    if t.cache_features:
        extract = dict(num_segments=d.num_segments, batch_size=d.batch_size, num_workers=d.num_workers,
                       device=device, dtype=dtype, cache_dir=t.feature_cache_dir)
        if data.train_is_static:
            train.cached = extract_features(encoder, data.train, sampling=_sampling(cfg, "train", 1),
                                            what="train features", **extract)
        else:
            logger.warning("train.cache_features: training clips are augmented (data.augment), so only the "
                           "validation features are cached")
        val.cached = extract_features(encoder, data.val, sampling=_sampling(cfg, "val", d.num_views),
                                      what="val features", **extract)
    return train, val


def run_probe(cfg: EvalConfig, encoder: nn.Module, info: EncoderInfo, out_dir: str | os.PathLike | None = None,
              device: str | torch.device = "auto", resume: bool = True) -> ProbeResult:
    """Train the probe heads on the frozen ``encoder``'s tokens, validate, write results.json; resumable."""
    device = resolve_device(device) if isinstance(device, str) else device
    dtype = resolve_dtype(cfg.train.dtype, device)
    out_dir = Path(out_dir) if out_dir is not None else default_output_dir(cfg, info)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.yaml").write_text(eval_config_to_yaml(cfg))
    encoder = encoder.to(device).eval().requires_grad_(False)
    data = build_eval_data(cfg.data)
    heads = build_heads(cfg, info.embed_dim, data.num_classes).to(device)
    optimizer = build_optimizer(heads, cfg)
    history: list[dict] = []
    state_path = out_dir / STATE_FILE
    if resume and state_path.is_file():
        state = load_state(state_path, cfg, info)
        heads.load_state_dict(state["heads"])
        optimizer.load_state_dict(state["optimizer"])
        history = state["history"]
        logger.info("Resumed the probe from %s after epoch %d", state_path, len(history))
    elif state_path.is_file():
        logger.info("Starting over (--no-resume): %s will be replaced", state_path)
    logger.info("Probing %s (%s%s) with %d head(s) on %s; output in %s", info.model, info.which,
                f", step {info.step}" if info.step is not None else "", len(heads), device, out_dir)

    train_source, val_source = None, None
    total_steps = 0
    for epoch in range(len(history), cfg.train.epochs):
        if train_source is None:
            train_source, val_source = _make_sources(cfg, encoder, data, device, dtype)
            total_steps = cfg.train.epochs * len(train_source)
        record: dict[str, Any] = {"epoch": epoch + 1,
                                  "train": train_epoch(heads, optimizer, train_source, cfg, epoch, total_steps)}
        if (epoch + 1) % cfg.train.eval_every == 0 or epoch + 1 == cfg.train.epochs:
            record["val"] = evaluate(heads, val_source, cfg)
            best = max(record["val"], key=lambda h: h["top1"])
            logger.info("epoch %d/%d: val top1 %.2f top5 %.2f (best of %d heads)", epoch + 1, cfg.train.epochs,
                        best["top1"], best["top5"], len(heads))
        history.append(record)
        save_state(state_path, {"config": cfg.to_dict(), "encoder": dataclasses.asdict(info),
                                "heads": heads.state_dict(), "optimizer": optimizer.state_dict(),
                                "history": history})
    return write_results(out_dir, cfg, info, history, data.num_classes, data)


# ------------------------------------------------------------------------------------------ command line


def main(argv: Sequence[str] | None = None) -> ProbeResult:
    parser = argparse.ArgumentParser(prog="python -m evals.attentive_probe", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fname", required=True, help="evaluation config, e.g. configs/eval/toy_direction.yaml")
    parser.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help="override config keys, e.g. --set optim.epochs=5 'optim.lr=[1e-3,3e-4]'")
    parser.add_argument("--checkpoint", help="vjm pre-training checkpoint whose encoder is probed")
    parser.add_argument("--encoder", choices=("target", "context"), default="target",
                        help="the EMA target encoder (default) or the context encoder of the checkpoint")
    parser.add_argument("--random-init", action="store_true",
                        help="probe the same encoder randomly initialised: the control")
    parser.add_argument("--pretrain-config", help="with --random-init and no --checkpoint: the pre-training "
                                                  "YAML whose model is built")
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda or cuda:N")
    parser.add_argument("--output-dir", help="where the probe state and results go (default: beside the checkpoint)")
    parser.add_argument("--no-resume", action="store_true", help="start over even if a probe state exists")
    args = parser.parse_args(argv)
    from launch import setup_logging

    setup_logging(0)
    try:
        cfg = load_eval_config(args.fname, args.overrides)
        which = "target_encoder" if args.encoder == "target" else "encoder"
        encoder, info = load_frozen_encoder(args.checkpoint, which, random_init=args.random_init,
                                            pretrain_config=args.pretrain_config, seed=cfg.run.seed)
    except (ConfigError, FileNotFoundError, ValueError) as exc:
        parser.exit(2, f"error: {exc}\n")
    result = run_probe(cfg, encoder, info, args.output_dir, args.device, resume=not args.no_resume)
    print(f"{cfg.run.name}: top1 {result.top1:.2f}  top5 {result.top5:.2f}  ({info.which})")
    print(result.results_path)
    return result


if __name__ == "__main__":
    main()
