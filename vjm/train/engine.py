"""The pre-training loop. It runs any objective: `objective(batch) -> (loss, metrics)`.

    train(cfg, dist) builds data, masks (when the objective needs them) and the objective from the
    config, resumes from <run_dir>/latest.pt when it exists, and trains with AdamW, warmup + cosine
    schedules, bf16 autocast on CUDA, gradient accumulation and clipping, DDP when there are several
    processes. The engine knows no objective by name: what differs between them is declared by the
    objective (vjm.objectives.base).

    An epoch is one pass over the batches the loader yields (whole batches only); the data position
    (epoch, batches used) is counted apart from the step, since a skipped step uses batches too.
    Divergence never reaches a checkpoint: non-finite losses skip the step (too many in a row stop
    the run), an update that blows up the weights stops it, and latest.pt is written only when the
    weights and the optimiser state are finite, so it is always the last good checkpoint.
    SIGTERM, SIGUSR1 and SIGINT stop the run after the current step, with a checkpoint.
    A step reads the device once (vjm.train.step_report), just before its update: the verdict on the
    loss, the stop flag of every rank, the metrics and the weight norm after the previous update,
    which is therefore checked one step late, or before a save, whichever comes first.
    The run folder's config.yaml is written once the run has started or resumed; resuming with a
    config whose recipe differs from the checkpoint's is refused unless allowed (vjm.train.run_folder).
    Epochs are counted from 0 here and shown from 1.

    The loss does not depend on the number of processes at the same global batch (data.batch_size x
    processes): each rank's batch is its block of the global batch (vjm.data.samplers), masks and
    their token counts are drawn per sample over the global batch (vjm.masks.collator), batch
    statistics gather the global batch (vjm.global_batch), and every loss is a mean over equal local
    shares, which DDP's gradient average turns into the global mean.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
from typing import Any

import numpy as np
import torch
import torch.distributed as torch_dist
from torch.nn.parallel import DistributedDataParallel

from vjm.config import Config, ConfigError
from vjm.data.datasets import SkippedFiles
from vjm.masks import MaskCollator, build_mask_generators, token_grid
from vjm.models.weights import load_weights
from vjm.objectives import build_objective

from .checkpoint import copy_checkpoint, load_checkpoint, remove_stale_temp_files, save_checkpoint
from .distributed import DistInfo, all_reduce_mean
from .optim import Schedules, build_optimizer
from .run_folder import record_config, resume_changes
from .run_log import RunLog
from .step_report import MetricSums, read_step
from .stopping import STOP, DivergenceError, TrainingStopped, signal_name

logger = logging.getLogger(__name__)


class NonFiniteLossError(DivergenceError):
    """Too many non-finite losses in a row."""


# ----------------------------------------------------------------------------- building


def build_training_data(cfg: Config, dist: DistInfo):
    """Dataset, loader and mask collator of the config, for this process's share."""
    from vjm.data import build_dataset, build_loader

    data = cfg.data
    if data.dataset == "toy":
        from vjm.data.toy import ensure_toy_dataset

        lists = ensure_toy_dataset(data.toy_root, num_train=data.toy_num_train, num_val=data.toy_num_val,
                                   frames=data.toy_frames, size=data.toy_size, seed=cfg.run.seed)
        kind, paths, weights = "video", [lists["train"][data.toy_task]], None
    else:
        kind, paths, weights = data.dataset, data.train, data.weights
    dataset = build_dataset(
        kind=kind, paths=paths, weights=weights, frames_per_clip=data.frames_per_clip,
        frame_step=data.frame_step, fps=data.fps, num_clips=data.num_clips, crop_size=data.crop_size,
        training=True, decoder=data.decoder, short_video=data.short_video,
        random_resize_scale=data.random_resize_scale, random_resize_aspect=data.random_resize_aspect,
        hflip=data.hflip, randaugment=data.randaugment, random_erasing=data.random_erasing,
    )
    grid = token_grid(data.frames_per_clip, data.crop_size, cfg.model.patch_size, cfg.model.tubelet_size)
    # Without generators (an objective that needs no masks) the collator only stacks the batch.
    # Masks and their equal token counts are the global batch's, whatever the number of processes.
    collator = MaskCollator(build_mask_generators(cfg.masks, grid), seed=cfg.run.seed,
                            global_batch_size=data.batch_size * dist.world_size)
    loader = build_loader(dataset, data.batch_size, data.num_workers, dist.rank, dist.world_size,
                          cfg.run.seed, collate_fn=collator, pin_memory=data.pin_memory and dist.device.type == "cuda")
    return loader, collator


def autocast_dtype(cfg: Config, device: torch.device) -> torch.dtype | None:
    choice = cfg.train.dtype
    if choice == "auto":
        choice = "bf16" if device.type == "cuda" else "fp32"
    return torch.bfloat16 if choice == "bf16" else None


def to_device(batch: Any, device: torch.device) -> Any:
    """Every tensor of a nested dict / list / tuple moved to ``device``; other values kept."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {key: to_device(value, device) for key, value in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(value, device) for value in batch)
    return batch


def epoch_steps(loader_batches: int, accum_steps: int, steps_per_epoch: int | None, share: str) -> int:
    """Optimiser steps in an epoch: every whole group of `accum_steps` of the `loader_batches` the
    loader yields, or `steps_per_epoch` when set (it may not ask for more). `share` says whose
    batches they are, for the errors."""
    available = loader_batches // accum_steps
    if available < 1:
        raise ConfigError(f"an epoch has {loader_batches} whole batch(es) {share}, fewer than optim.accum_steps="
                         f"{accum_steps}: lower data.batch_size or optim.accum_steps, or use more samples")
    if steps_per_epoch is None:
        return available
    if steps_per_epoch > available:
        raise ConfigError(f"train.steps_per_epoch={steps_per_epoch} but an epoch has only {available} steps of "
                         f"{accum_steps} batch(es) {share}; lower it or omit it")
    return steps_per_epoch


def weight_norm(params: list[torch.Tensor]) -> torch.Tensor | None:
    """The 2-norm of all `params` together, on their device (inf or nan when any value is); None
    without parameters."""
    if not params:
        return None
    # Batched per-tensor norms, as clip_grad_norm_ computes them (get_total_norm needs torch 2.6).
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm([p.detach() for p in params])))


def host_value(norm: torch.Tensor | None) -> float:
    return 0.0 if norm is None else float(norm)


def first_nonfinite(named_tensors: dict[str, Any]) -> str | None:
    """The name of the first floating tensor of a nested dict that holds inf or nan, else None."""
    for name, value in named_tensors.items():
        if isinstance(value, dict):
            inner = first_nonfinite({f"{name}.{k}": v for k, v in value.items()})
            if inner is not None:
                return inner
        elif isinstance(value, torch.Tensor) and value.is_floating_point() and not torch.isfinite(value).all():
            return name
    return None


# ----------------------------------------------------------------------------- state


def rng_state() -> dict[str, Any]:
    numpy_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": random.getstate(),
        "numpy": [numpy_state[0], torch.from_numpy(numpy_state[1].astype(np.int64)), *numpy_state[2:]],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    # RNG states are CPU byte tensors, whatever device the checkpoint was loaded to.
    torch.set_rng_state(state["torch"].cpu())
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    random.setstate(tuple(v if not isinstance(v, list) else tuple(v) for v in state["python"]))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.cpu().numpy().astype(np.uint32), *rest))


def gather_from_ranks(dist: DistInfo, local: dict[str, Any]) -> list[dict[str, Any]]:
    """Every rank's `local` (its RNG state and counters), so that a resume restores each process."""
    if not dist.distributed:
        return [local]
    states: list[Any] = [None] * dist.world_size
    torch_dist.all_gather_object(states, local)
    return states


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ----------------------------------------------------------------------------- the loop


class Trainer:
    """``allow_config_change``: resume even when the config's recipe differs from the checkpoint's
    (the change is recorded in the run folder's config history)."""

    def __init__(self, cfg: Config, dist: DistInfo, *, allow_config_change: bool = False):
        self.cfg, self.dist, self.device = cfg, dist, dist.device
        self.allow_config_change = allow_config_change
        self.run_dir = cfg.run_dir
        self.latest = cfg.latest_checkpoint
        if dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            remove_stale_temp_files(self.latest)  # a write killed midway must not keep the disk full

        # One random stream for every rank: identical initial weights, and the draws of the training
        # process (drop path, mixup) are made for the global batch, each rank keeping its share
        # (vjm.global_batch), so they do not depend on the number of ranks. Data augmentation and
        # masks are seeded per sample (vjm.data.samplers, vjm.masks.collator).
        seed_everything(cfg.run.seed)
        self.objective = build_objective(cfg).to(self.device)
        self.optimizer = build_optimizer(self.objective, cfg.optim)
        self.model = self.objective
        if dist.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = DistributedDataParallel(self.objective, device_ids=ids)

        self.loader, self.collator = build_training_data(cfg, dist)
        self.accum = cfg.optim.accum_steps
        share = (f"of {cfg.data.batch_size} clips on each of {dist.world_size} process(es) "
                 f"({len(self.loader.dataset)} samples)")
        self.steps_per_epoch = epoch_steps(self.loader.sampler.num_batches(), self.accum,
                                           cfg.train.steps_per_epoch, share)
        self.total_steps = cfg.train.epochs * self.steps_per_epoch
        self.schedules = Schedules(cfg.optim, self.total_steps)
        self.amp_dtype = autocast_dtype(cfg, self.device)
        self.step = 0
        self.epoch = 0
        self.epoch_batch = 0  # batches of this epoch used so far (by steps made or skipped)
        self.saved_step: int | None = None  # step of the last checkpoint written or resumed from
        self.params = [p for p in self.objective.parameters() if p.requires_grad]
        self.weights_norm = host_value(weight_norm(self.params))  # the last one checked
        self.pending_update: tuple[int, torch.Tensor] | None = None  # (step, weight norm after it), unchecked
        self.agreed_stop: int | None = None  # a stop signal every rank knows of, from the last step read
        self.nonfinite_in_row = 0
        self.skipped = SkippedFiles()  # distinct unreadable files, the same on every rank once merged
        self.skipped_here: list[tuple[str, str]] = []  # met by this rank since the last merge
        self.image_batch: dict | None = None  # the last micro-batch, on the host: objective pictures draw it
        # Metrics that are values of a schedule (lr, EMA momentum): the same on every rank, not averaged.
        self.schedule_keys: set[str] = set()
        self.config_changes: list = []  # from the resumed checkpoint's config (run_folder.Change)

    # -- checkpoints

    def state(self) -> dict[str, Any]:
        self.merge_skipped()
        return {
            "config": self.cfg.to_dict(),
            "step": self.step,
            "epoch": self.epoch,
            "objective": self.cfg.objective.name,
            "models": {name: module.state_dict() for name, module in self.objective.checkpoint_modules().items()},
            "optimizer": self.optimizer.state_dict(),
            "ranks": gather_from_ranks(self.dist, {"rng": rng_state()}),
            "masks": self.collator.state_dict(),
            "data": {"steps_per_epoch": self.steps_per_epoch, "accum_steps": self.accum,
                     "world_size": self.dist.world_size, "epoch_batch": self.epoch_batch,
                     "skipped_files": dict(self.skipped.reasons)},
        }

    def save(self) -> None:
        """Write latest.pt, after checking that nothing in it went non-finite (else DivergenceError)."""
        self.check_pending_update()
        self.check_state()  # the same verdict on every rank: weights and optimiser state are replicated
        state = self.state()  # every rank joins the gather of per-rank state
        self.saved_step = self.step
        if not self.dist.is_main:
            return
        save_checkpoint(state, self.latest)
        keep = self.cfg.train.keep_every
        if keep and self.step % keep == 0:
            copy_checkpoint(self.latest, self.run_dir / f"step{self.step:08d}.pt")
        logger.info("checkpoint: step %d -> %s", self.step, self.latest)

    def check_state(self) -> None:
        models = {name: module.state_dict() for name, module in self.objective.checkpoint_modules().items()}
        bad = first_nonfinite({"models": models, "optimizer": self.optimizer.state_dict()["state"]})
        if bad is not None:
            raise DivergenceError(self.diverged(f"{bad} holds non-finite values at step {self.step}"))

    def check_pending_update(self) -> None:
        if self.pending_update is not None:
            step, norm = self.pending_update
            self.check_update(step, float(norm))

    def check_update(self, step: int, norm: float) -> None:
        """Stop when the update of `step`, after which the weights have `norm`, made them non-finite or
        grew their norm past the bound."""
        self.pending_update = None
        previous, self.weights_norm = self.weights_norm, norm
        if not math.isfinite(self.weights_norm):
            raise DivergenceError(self.diverged(f"the update of step {step} made the weights non-finite"))
        bound = self.cfg.train.max_weight_growth
        if bound and previous > 0 and self.weights_norm > bound * previous:
            raise DivergenceError(self.diverged(
                f"the update of step {step} grew the weight norm {self.weights_norm / previous:.3g}-fold "
                f"({previous:.4g} -> {self.weights_norm:.4g}; train.max_weight_growth={bound:g})"))

    def diverged(self, what: str) -> str:
        """The one-line stop message: what went wrong, the checkpoint to resume from, the change to make."""
        if self.saved_step is None:
            last, then = "none written yet", "to start again"
        else:
            last, then = f"{self.latest} (step {self.saved_step})", "--allow-config-change to resume from it"
        lr = self.cfg.optim.lr
        return (f"training diverged: {what}; stopping, nothing saved. Last good checkpoint: {last}. "
                f"Lower the learning rate (optim.lr={lr:g}) or raise optim.warmup_steps, then run the same command "
                f"with e.g. --set optim.lr={lr / 10:g} {then}")

    def resume(self) -> bool:
        if not self.latest.exists():
            return False
        state = load_checkpoint(self.latest, map_location=self.device)
        self.config_changes = resume_changes(state["config"], self.cfg, checkpoint=self.latest,
                                             allow_change=self.allow_config_change)
        data = state["data"]
        if (data["steps_per_epoch"], data["accum_steps"]) != (self.steps_per_epoch, self.accum):
            raise ConfigError(
                f"{self.latest} was written with {data['steps_per_epoch']} steps per epoch and accum_steps "
                f"{data['accum_steps']}; this run has {self.steps_per_epoch} and {self.accum}. Resume with the "
                "same data and batch settings, or start a new run folder"
            )
        for name, module in self.objective.checkpoint_modules().items():
            if name not in state["models"]:
                raise ValueError(f"{self.latest} holds no {name!r} (it has {sorted(state['models'])}); it was not "
                                 f"written by objective {self.cfg.objective.name!r}. Start a new run folder")
            try:
                load_weights(module, state["models"][name], source=f"{self.latest} ({name!r})", model=self.cfg.model,
                             saved_model=state["config"].get("model"),
                             remedy="Start a new run folder (run.folder), or set the model section as the checkpoint's")
            except ValueError as e:  # a config that cannot resume this checkpoint: one line, as config errors
                raise ConfigError(str(e)) from None
        self.optimizer.load_state_dict(state["optimizer"])
        self.collator.load_state_dict(state["masks"])
        self.step = self.saved_step = state["step"]
        self.weights_norm = host_value(weight_norm(self.params))
        if "epoch_batch" in data:
            self.epoch, self.epoch_batch = state["epoch"], data["epoch_batch"]
        else:  # written before the data position was kept: it followed from the step
            self.epoch = self.step // self.steps_per_epoch
            self.epoch_batch = (self.step - self.epoch * self.steps_per_epoch) * self.accum
        ranks = state["ranks"]
        if len(ranks) == self.dist.world_size:
            set_rng_state(ranks[self.dist.rank]["rng"])
        else:  # the ranks share one stream (see __init__): rank 0's continues it on any number of processes
            logger.info("resuming on %d processes from a run on %d: every rank continues rank 0's random stream",
                        self.dist.world_size, len(ranks))
            set_rng_state(ranks[0]["rng"])
        self.skipped = SkippedFiles(data.get("skipped_files", {}))  # older checkpoints kept only a count
        return True

    def merge_skipped(self) -> None:
        """Add the files every rank skipped since the last merge; the main rank names the new ones.
        A collective: every rank calls it at the same step (when logging or saving)."""
        met = gather_from_ranks(self.dist, self.skipped_here)
        self.skipped.add((pair for pairs in met for pair in pairs), report=self.dist.is_main)
        self.skipped_here = []

    # -- one optimiser step

    def micro_batches(self):
        """The rest of the current epoch's batches, from the data position."""
        sampler = self.loader.sampler
        sampler.set_epoch(self.epoch)
        sampler.set_start(self.epoch_batch)
        self.collator.set_epoch(self.epoch)
        return iter(self.loader)

    def next_batch(self, batches) -> dict[str, Any]:
        batch = next(batches)
        self.epoch_batch += 1
        self.skipped_here.extend(batch["skipped"])
        return batch

    def optimizer_step(self, batches) -> dict[str, float] | None:
        """Forward/backward over accum micro-batches, then one update. None when skipped: a non-finite
        loss on any rank skips the whole step (its accum batches are used)."""
        lr, wd = self.schedules.apply(self.optimizer, self.step)
        loss_sum, sums = None, MetricSums()
        for k in range(self.accum):
            batch = self.next_batch(batches)
            self.image_batch = batch
            batch = to_device(batch, self.device)
            last = k == self.accum - 1
            sync = contextlib.nullcontext() if last or not self.dist.distributed else self.model.no_sync()
            with sync, torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                                      enabled=self.amp_dtype is not None):
                loss, metrics = self.model(batch)
                # Backward whatever the loss: whether it is finite is read once, below, with the rest.
                (loss / self.accum).backward()
            loss_sum = loss.detach() if loss_sum is None else loss_sum + loss.detach()
            sums.add(metrics, 1.0 / self.accum)
        clip = self.cfg.optim.clip_grad
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, clip if clip > 0 else float("inf"))
        pending = self.pending_update
        report = read_step(loss_sum, grad_norm, sums, None if pending is None else pending[1],
                           STOP.signum, self.dist.distributed)
        self.agreed_stop = report.stop
        if pending is not None:
            self.check_update(pending[0], report.weight_norm)
        if not report.finite:  # the update is never applied
            self.optimizer.zero_grad(set_to_none=True)
            self._count_nonfinite(report.loss)
            return None
        self.nonfinite_in_row = 0
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        norm = weight_norm(self.params)
        self.pending_update = None if norm is None else (self.step, norm)
        schedule = {"lr": lr, "wd": wd, **self.objective.after_optimizer_step(self.step / self.total_steps)}
        self.schedule_keys.update(schedule)
        return {**report.metrics, "grad_norm": report.grad_norm, **schedule}

    def _count_nonfinite(self, loss: float) -> None:
        self.nonfinite_in_row += 1
        logger.warning("non-finite loss (%s) at step %d: step skipped (%d in a row)",
                       loss, self.step, self.nonfinite_in_row)
        if self.nonfinite_in_row >= self.cfg.train.max_nonfinite:
            raise NonFiniteLossError(self.diverged(f"{self.nonfinite_in_row} non-finite losses in a row at step "
                                                   f"{self.step}"))

    # -- the run

    def fit(self) -> dict[str, float]:
        with STOP.catching():
            return self._fit()

    def _fit(self) -> dict[str, float]:
        resumed = self.resume()
        cfg = self.cfg
        if self.step >= self.total_steps:  # a finished run started again: write nothing, not even a log
            logger.info("run already complete (%d/%d steps); nothing to do. %s holds it; raise train.epochs to "
                        "train on, or --set run.folder=... for a new run", self.step, self.total_steps, self.latest)
            return {}
        if resumed:
            logger.info("resumed from %s at step %d (epoch %d of %d)", self.latest, self.step,
                        self.display_epoch(), cfg.train.epochs)
        if self.dist.is_main:
            record_config(cfg, self.step, self.config_changes, allowed=self.allow_config_change)
        run_log = RunLog(self.run_dir, self.total_steps, self.step, self.dist.is_main, cfg.train.tensorboard)
        clips_per_step = cfg.data.batch_size * cfg.data.num_clips * self.accum * self.dist.world_size
        logger.info("training %s for %d steps (%d epochs x %d) on %d process(es), %s, %s",
                    cfg.objective.name, self.total_steps, cfg.train.epochs, self.steps_per_epoch,
                    self.dist.world_size, self.device, self.amp_dtype or torch.float32)
        self.model.train()
        self.window: dict[str, list[float]] = {}
        self.last: dict[str, float] = {}
        try:
            while self.step < self.total_steps:
                self.train_epoch(run_log, clips_per_step)
                if self.saved_step != self.step:
                    self.save()  # end of epoch
        finally:
            run_log.close()
        return self.last

    def display_epoch(self) -> int:
        """The epoch the next step belongs to, counted from 1 (as every message shows it)."""
        finished = self.epoch_batch + self.accum > self.steps_per_epoch * self.accum
        return self.epoch + 1 + int(finished and self.step < self.total_steps)

    def train_epoch(self, run_log: RunLog, clips_per_step: int) -> None:
        """Steps until the epoch's batches are used up or the run ends (a stop request ends it early)."""
        epoch_batches = self.steps_per_epoch * self.accum
        if self.epoch_batch + self.accum > epoch_batches:  # no whole step left: the next epoch
            self.epoch, self.epoch_batch = self.epoch + 1, 0
        batches = self.micro_batches()
        first_batch = self.epoch_batch
        while self.step < self.total_steps and self.epoch_batch + self.accum <= epoch_batches:
            try:
                metrics = self.optimizer_step(batches)
            except StopIteration:  # the loader yielded fewer batches than it promised: end the epoch
                self.optimizer.zero_grad(set_to_none=True)
                if self.epoch_batch == first_batch:
                    raise RuntimeError(f"epoch {self.epoch + 1} yielded no batch at batch {first_batch} of "
                                       f"{epoch_batches}; the data loader is inconsistent") from None
                logger.warning("epoch %d ended after %d of %d batches", self.epoch + 1, self.epoch_batch,
                               epoch_batches)
                self.epoch_batch = epoch_batches
                break
            if metrics is not None:
                self.after_step(metrics, run_log, clips_per_step)
        del batches

    def after_step(self, metrics: dict[str, float], run_log: RunLog, clips_per_step: int) -> None:
        """Log, checkpoint, and stop here when a signal asked for it."""
        for key, value in metrics.items():
            self.window.setdefault(key, []).append(value)
        if self.step % self.cfg.train.log_every == 0 or self.step == self.total_steps:
            self.last = self._log(run_log, self.window, self.epoch + 1, clips_per_step)
            self.window = {}
        if self.cfg.train.image_every and self.step % self.cfg.train.image_every == 0:
            self._draw_images(run_log)
        if self.step % self.cfg.train.checkpoint_every == 0:
            self.save()
        if self.step < self.total_steps and self.agreed_stop is not None:
            self.stop(self.agreed_stop)

    def stop(self, signum: int) -> None:
        if self.saved_step != self.step:
            self.save()
        raise TrainingStopped(f"stopped by {signal_name(signum)} at step {self.step} of {self.total_steps}; "
                              f"saved {self.latest}. Run the same command to resume", signum)

    def _draw_images(self, run_log: RunLog) -> None:
        """The objective's pictures of the last training batch, to TensorBoard (rank 0). The random
        streams are left as they were, so a run with pictures trains exactly as one without."""
        if not (self.dist.is_main and self.cfg.train.tensorboard):
            return
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            self.objective.eval()
            try:
                images = self.objective.images(to_device(self.image_batch, self.device))
            finally:
                self.objective.train()
        run_log.write_images(self.step, images)

    def _log(self, run_log: RunLog, window: dict[str, list[float]], epoch: int, clips_per_step: int):
        """Log the window's means; ``epoch`` counted from 1."""
        means = {key: float(np.mean(values)) for key, values in window.items()}
        means = {key: all_reduce_mean(value) if key not in self.schedule_keys else value
                 for key, value in means.items()}
        self.merge_skipped()
        means["skipped_files"] = len(self.skipped)
        run_log.write(self.step, epoch, means)
        if self.dist.is_main:
            logger.info(run_log.progress_line(self.step, epoch, self.cfg.train.epochs, means, clips_per_step,
                                              hidden=self.schedule_keys))
        return means


def train(cfg: Config, dist: DistInfo, *, allow_config_change: bool = False) -> dict[str, float]:
    """Pre-train as `cfg` says; resumes from <run_dir>/latest.pt when it exists (see Trainer)."""
    return Trainer(cfg, dist, allow_config_change=allow_config_change).fit()
