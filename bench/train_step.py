"""Training-step throughput and peak memory of any objective, on random clips, for one config.

    python -m bench.train_step --fname configs/vjepa_k400_tiny.yaml --batch 8 16 32 64 128
    python -m bench.train_step --fname configs/vjepa_k400_tiny.yaml --find-max-batch
    python -m bench.train_step --fname configs/mae_k400_tiny.yaml --batch 32

Each batch size runs warmup steps, then timed steps of the config's objective (V-JEPA: context
encoder, predictor, EMA target; MAE, ARM, supervised likewise), with masks from the config's
generators when the objective takes them, random labels, AdamW and autocast as the config says,
on random clips. Prints a markdown table: batch, steps/s, clips/s, peak memory. A batch that
does not fit is reported as OOM. Data loading is excluded (see bench/data.py for it).
"""

from __future__ import annotations

import argparse
import time

import torch

from vjm.config import load_config
from vjm.masks import build_mask_generators, token_grid
from vjm.objectives import build_objective
from vjm.train.engine import autocast_dtype
from vjm.train.optim import build_optimizer


def make_batch(cfg, batch_size: int, generators, device, rng) -> dict:
    """Random clips, a label each (class 0 up to num_classes - 1 when the objective has classes) and
    one (context, target) index pair per mask generator."""
    data = cfg.data
    clip = torch.randn(batch_size, 3, data.frames_per_clip, data.crop_size, data.crop_size, device=device)
    masks = [tuple(t.to(device) for t in g.sample(batch_size, rng)) for g in generators]
    classes = getattr(cfg.objective, "num_classes", 1)
    label = torch.randint(0, classes, (batch_size,), generator=rng).to(device)
    batch = {"clip": clip, "label": label}
    if generators:
        batch["masks"] = masks
    return batch


def objective_step(cfg, batch_size: int, device: torch.device, wrap=None):
    """A closure running training step i of the config's objective (two random batches alternate)
    -> (step, objective). ``wrap(objective)`` is the module the step calls (DistributedDataParallel,
    say); default: the objective."""
    objective = build_objective(cfg).to(device).train()
    model = objective if wrap is None else wrap(objective)
    optimizer = build_optimizer(objective, cfg.optim)
    grid = token_grid(cfg.data.frames_per_clip, cfg.data.crop_size, cfg.model.patch_size, cfg.model.tubelet_size)
    generators = build_mask_generators(cfg.masks, grid) if cfg.objective.needs_masks else []
    rng = torch.Generator().manual_seed(0)
    batches = [make_batch(cfg, batch_size, generators, device, rng) for _ in range(2)]
    dtype = autocast_dtype(cfg, device)

    def step(i: int) -> torch.Tensor:
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss, _ = model(batches[i % 2])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        objective.after_optimizer_step(0.5)
        return loss.detach()

    return step, objective


def measure(cfg, batch_size: int, steps: int, warmup: int, device: torch.device, wrap=None) -> dict:
    step, _ = objective_step(cfg, batch_size, device, wrap)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for i in range(warmup):
        step(i)
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for i in range(steps):
        loss = step(i)
    sync()
    elapsed = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
    return {"steps_per_s": steps / elapsed, "clips_per_s": steps * batch_size / elapsed, "peak_gib": peak,
            "loss": float(loss)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fname", required=True)
    parser.add_argument("--set", dest="overrides", nargs="+", default=[])
    parser.add_argument("--batch", type=int, nargs="+", default=[8])
    parser.add_argument("--find-max-batch", action="store_true", help="double the batch from 8 until it does not fit")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    cfg = load_config(args.fname, args.overrides, check_data=False)  # synthetic clips: the data is not read
    device = torch.device(args.device)
    sizes = [8 * 2**i for i in range(12)] if args.find_max_batch else args.batch
    name = f"{cfg.objective.name} {cfg.model.name} {cfg.data.frames_per_clip}x{cfg.data.crop_size}^2 scan={cfg.model.scan_backend}"
    print(f"| model | batch | steps/s | clips/s | peak GiB | loss |\n|---|---|---|---|---|---|", flush=True)
    for batch in sizes:
        try:
            r = measure(cfg, batch, args.steps, args.warmup, device)
        except torch.OutOfMemoryError:
            print(f"| {name} | {batch} | OOM | | | |", flush=True)
            break
        finally:
            if device.type == "cuda":
                torch.cuda.empty_cache()
        print(f"| {name} | {batch} | {r['steps_per_s']:.3f} | {r['clips_per_s']:.1f} | {r['peak_gib']:.1f} | "
              f"{r['loss']:.4f} |", flush=True)


if __name__ == "__main__":
    main()
