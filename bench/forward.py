"""Forward time of an encoder on one clip, per selective-scan backend and dtype.

    python bench/forward.py --model videomamba_tiny --frames 16 --size 224 --backends torch mamba_ssm

Prints a markdown table (median of --repeats timed forwards after --warmup, no gradient).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from vjm.models import build

DTYPES = {"fp32": None, "bf16": torch.bfloat16}


def time_forward(model, clip, dtype, repeats: int, warmup: int) -> float:
    sync = torch.cuda.synchronize if clip.is_cuda else (lambda: None)
    times = []
    with torch.no_grad(), torch.autocast(clip.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
        for i in range(warmup + repeats):
            sync()
            start = time.perf_counter()
            model(clip)
            sync()
            if i >= warmup:
                times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="videomamba_tiny")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--backends", nargs="+", default=["torch"])
    parser.add_argument("--dtypes", nargs="+", default=["fp32"], choices=sorted(DTYPES))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    clip = torch.randn(args.batch, 3, args.frames, args.size, args.size, device=args.device)
    name = torch.cuda.get_device_name() if clip.is_cuda else f"CPU ({torch.get_num_threads()} threads)"
    print(f"{args.model}, clip {tuple(clip.shape)}, {name}, torch {torch.__version__}\n")
    print("| backend | dtype | forward ms |\n|---|---|---|", flush=True)
    for backend in args.backends:
        model = build(args.model, scan_backend=backend).to(args.device).eval()
        for dtype in args.dtypes:
            try:
                ms = 1e3 * time_forward(model, clip, DTYPES[dtype], args.repeats, args.warmup)
                print(f"| {backend} | {dtype} | {ms:.1f} |", flush=True)
            except RuntimeError as exc:  # a backend that cannot run here says why
                print(f"| {backend} | {dtype} | unavailable: {exc} |", flush=True)


if __name__ == "__main__":
    main()
