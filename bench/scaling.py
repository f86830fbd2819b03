"""Multi-GPU scaling of the V-JEPA training step: clips/s on 1 and N GPUs of one host (DDP over NCCL).

    python -m bench.scaling --fname configs/vjepa_k400_tiny.yaml --gpus 1 2 --batch 8
    python -m bench.scaling --fname configs/vjepa_tiny.yaml --device cpu --gpus 1 2 --steps 3   # gloo smoke run

Each run starts one process per device (rendezvous on 127.0.0.1), each with ``--batch`` random clips
of the config's size (16 x 224^2 for the K400 configs) and masks from its generators, and times
``--steps`` training steps after ``--warmup`` (bench.train_step's step, inside DistributedDataParallel:
forward, backward with the gradient all-reduce, AdamW, EMA). Data loading is excluded (bench/data.py).
The per-device batch stays fixed, so N devices train a global batch N times larger:
efficiency = rate on N / (N x rate on 1). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os

import torch
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from bench.train_step import measure
from vjm.config import load_config
from vjm.train.distributed import cleanup, find_free_port, init_distributed


def _worker(rank: int, world: int, port: int, args: argparse.Namespace, results) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    device = f"cuda:{rank}" if args.device == "cuda" else "cpu"
    dist = init_distributed(device)
    try:
        cfg = load_config(args.fname, args.overrides, check_data=False)  # random clips: the data is not read
        ids = [dist.device.index] if dist.device.type == "cuda" else None
        wrap = (lambda objective: DistributedDataParallel(objective, device_ids=ids)) if world > 1 else None
        result = measure(cfg, args.batch, args.steps, args.warmup, dist.device, wrap)
        if rank == 0:
            results.put(result)
    finally:
        cleanup()


def run(world: int, args: argparse.Namespace) -> dict:
    """One measurement on ``world`` processes -> rank 0's result, clips/s over all of them."""
    results = mp.get_context("spawn").SimpleQueue()
    mp.spawn(_worker, args=(world, find_free_port(), args, results), nprocs=world, join=True)
    result = results.get()
    return {**result, "clips_per_s": result["clips_per_s"] * world}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fname", required=True)
    parser.add_argument("--set", dest="overrides", nargs="+", default=[])
    parser.add_argument("--gpus", type=int, nargs="+", default=[1, 2], help="process counts to measure")
    parser.add_argument("--batch", type=int, default=8, help="clips per process")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    if args.device == "cuda" and max(args.gpus) > torch.cuda.device_count():
        parser.error(f"--gpus {max(args.gpus)} but {torch.cuda.device_count()} CUDA device(s) are visible")
    cfg = load_config(args.fname, args.overrides, check_data=False)
    name = f"{cfg.model.name} {cfg.data.frames_per_clip}x{cfg.data.crop_size}^2 {cfg.train.dtype}"
    print(f"| model | {args.device}s | batch per process | global batch | clips/s | efficiency | peak GiB |\n"
          "|---|---|---|---|---|---|---|", flush=True)
    single = None
    for world in args.gpus:
        r = run(world, args)
        single = r["clips_per_s"] if world == 1 else single
        efficiency = f"{r['clips_per_s'] / (world * single):.2f}" if single else "n/a (no 1-process run)"
        print(f"| {name} | {world} | {args.batch} | {args.batch * world} | {r['clips_per_s']:.1f} | {efficiency} | "
              f"{r['peak_gib']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
