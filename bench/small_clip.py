"""The main job's small clips: steps/s of the engine's own training step with the config's data
loading, and where a step's time goes.

    python -m bench.small_clip --fname configs/vjepa_tiny.yaml --steps 40

Two passes of vjm.train.engine.Trainer.optimizer_step on batches from the config's loader (the toy
dataset is generated under --toy-root on first use):

  free-running: steps/s over --steps steps, the device synchronised only at the ends (what training gets);
  staged:       --staged-steps steps with the device synchronised at each stage boundary, so that the
                time can be attributed: data wait (the loader's next batch and its copy to the device),
                forward, backward, optimiser (gradient clip, the step's one read, AdamW, EMA). The
                stages add up to more than a free-running step by the overlap the syncs remove.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from pathlib import Path

import torch

from vjm.config import load_config
from vjm.cpu import use_threads
from vjm.train.distributed import DistInfo
from vjm.train.engine import Trainer

STAGES = ("data wait", "forward", "backward", "optimiser")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def small_clip_trainer(fname: str, overrides: list[str], device: torch.device, toy_root: Path,
                       run_folder: Path) -> Trainer:
    cfg = load_config(fname, [*overrides, f"data.toy_root={toy_root}", f"run.folder={run_folder}"])
    if cfg.optim.accum_steps != 1:
        raise ValueError(f"the stage timings need optim.accum_steps = 1, got {cfg.optim.accum_steps}")
    use_threads(cfg.run.threads, workers=cfg.data.num_workers)  # as the launchers do: threads that fit the cores
    return Trainer(cfg, DistInfo(device=device))


def epoch_batches(trainer: Trainer, steps: int):
    """An iterator over the loader with at least `steps` whole steps left in its epoch."""
    if trainer.epoch_batch + steps * trainer.accum > trainer.steps_per_epoch * trainer.accum:
        if steps > trainer.steps_per_epoch:
            raise ValueError(f"{steps} steps do not fit in an epoch of {trainer.steps_per_epoch}")
        trainer.epoch, trainer.epoch_batch = trainer.epoch + 1, 0
    return trainer.micro_batches()


def free_running(trainer: Trainer, steps: int, warmup: int) -> float:
    """Steps per second of `steps` engine steps after `warmup` on the same loader iterator."""
    batches = epoch_batches(trainer, warmup + steps)
    for _ in range(warmup):
        trainer.optimizer_step(batches)
    sync(trainer.device)
    start = time.perf_counter()
    for _ in range(steps):
        trainer.optimizer_step(batches)
    sync(trainer.device)
    return steps / (time.perf_counter() - start)


@contextlib.contextmanager
def stage_clock(trainer: Trainer):
    """Marks stage boundaries inside the engine's step (device synchronised at each): the objective's
    forward hooks, and the gradient clip that follows the backward. Yields the per-stage seconds."""
    seconds = dict.fromkeys(STAGES, 0.0)
    marks: dict[str, float] = {}

    def mark(name: str) -> None:
        sync(trainer.device)
        marks[name] = time.perf_counter()

    real_clip = torch.nn.utils.clip_grad_norm_

    def clip_after_backward(*args, **kwargs):
        mark("backward end")
        return real_clip(*args, **kwargs)

    hooks = [trainer.model.register_forward_pre_hook(lambda *_: mark("forward start")),
             trainer.model.register_forward_hook(lambda *_: mark("forward end"))]
    torch.nn.utils.clip_grad_norm_ = clip_after_backward
    real_step = trainer.optimizer_step

    def timed_step(batches):
        mark("step start")
        result = real_step(batches)
        mark("step end")
        order = ["step start", "forward start", "forward end", "backward end", "step end"]
        for stage, (begin, end) in zip(STAGES, zip(order, order[1:])):
            seconds[stage] += marks[end] - marks[begin]
        return result

    trainer.optimizer_step = timed_step
    try:
        yield seconds
    finally:
        del trainer.optimizer_step  # the class's method again
        torch.nn.utils.clip_grad_norm_ = real_clip
        for hook in hooks:
            hook.remove()


def staged(trainer: Trainer, steps: int, warmup: int) -> dict[str, float]:
    """Milliseconds per step of each stage, over `steps` steps after `warmup`."""
    batches = epoch_batches(trainer, warmup + steps)
    for _ in range(warmup):
        trainer.optimizer_step(batches)
    with stage_clock(trainer) as seconds:
        for _ in range(steps):
            trainer.optimizer_step(batches)
    return {stage: 1e3 * value / steps for stage, value in seconds.items()}


def small_clip_table(fname: str, overrides: list[str], device: torch.device, steps: int, staged_steps: int,
                     warmup: int, toy_root: Path | None = None) -> None:
    """Print the two passes as one markdown table."""
    with tempfile.TemporaryDirectory() as tmp:
        toy = toy_root or Path(tmp) / "toy"
        trainer = small_clip_trainer(fname, overrides, device, toy, Path(tmp) / "run")
        cfg = trainer.cfg
        print(f"\n## Small clips: {Path(fname).name} ({cfg.objective.name}, {cfg.model.name}, batch "
              f"{cfg.data.batch_size} of {cfg.data.frames_per_clip} x {cfg.data.crop_size}^2, "
              f"{cfg.data.num_workers} loader worker(s), {trainer.amp_dtype or torch.float32}), the engine's step "
              "with its data loading\n", flush=True)
        rate = free_running(trainer, steps, warmup)
        print(f"| pass | steps | steps/s | {' ms | '.join(STAGES)} ms | sum ms |\n|---|---|---|---|---|---|---|---|")
        print(f"| free-running | {steps} | {rate:.2f} | | | | | {1e3 / rate:.1f} |", flush=True)
        ms = staged(trainer, staged_steps, warmup)
        total = sum(ms.values())
        cells = " | ".join(f"{value:.1f}" for value in ms.values())
        print(f"| staged (synced at each stage) | {staged_steps} | {1e3 / total:.2f} | {cells} | {total:.1f} |",
              flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fname", default="configs/vjepa_tiny.yaml")
    parser.add_argument("--set", dest="overrides", nargs="+", default=[], help="config overrides key=value")
    parser.add_argument("--steps", type=int, default=40, help="free-running timed steps")
    parser.add_argument("--staged-steps", type=int, default=15, help="steps timed stage by stage")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--toy-root", type=Path, default=None, help="toy dataset folder (default: a temporary one)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    small_clip_table(args.fname, args.overrides, torch.device(args.device), args.steps, args.staged_steps,
                     args.warmup, args.toy_root)


if __name__ == "__main__":
    main()
