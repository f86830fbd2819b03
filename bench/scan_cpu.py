"""Time the torch reference scan on the CPU, forward and forward+backward, at the main job's shapes.

    python bench/scan_cpu.py                       # B x E x N x L shapes of the toy runs, 1 thread
    python bench/scan_cpu.py --threads 2 --shapes 8,384,16,64 16,384,16,64

The main job and the toy probes run this backend on a CPU (bench/scan.py times the GPU backends).
Inputs: fp32, softplus on delta, no D or z; forward under no_grad; forward+backward with every input
requiring a gradient. Prints a markdown table of medians over --repeats after one warm-up.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from vjm.ops.scan_torch import selective_scan_torch  # noqa: E402

# (batch, E, N, L): the main job's context / target passes at batch 8, a probe batch of 16 clips.
DEFAULT_SHAPES = ["8,384,16,64", "8,384,16,16", "16,384,16,64", "16,192,16,64"]


def median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def time_shape(batch: int, dim: int, state: int, length: int, repeats: int) -> tuple[float, float]:
    g = torch.Generator().manual_seed(0)
    inputs = [torch.randn(batch, dim, length, generator=g), torch.randn(batch, dim, length, generator=g),
              -torch.rand(dim, state, generator=g), torch.randn(batch, state, length, generator=g),
              torch.randn(batch, state, length, generator=g)]

    def forward():
        with torch.no_grad():
            selective_scan_torch(*inputs, delta_softplus=True)

    leaves = [t.clone().requires_grad_() for t in inputs]

    def forward_backward():
        selective_scan_torch(*leaves, delta_softplus=True).square().sum().backward()

    return median_ms(forward, repeats), median_ms(forward_backward, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", nargs="+", default=DEFAULT_SHAPES, help="B,E,N,L")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), median of {args.repeats}\n")
    print("| B | E | N | L | forward ms | forward+backward ms |")
    print("|---|---|---|---|---|---|")
    for text in args.shapes:
        try:
            batch, dim, state, length = (int(v) for v in text.split(","))
        except ValueError:
            parser.error(f"--shapes: expected B,E,N,L (four integers), got {text!r}")
        fwd, fwd_bwd = time_shape(batch, dim, state, length, args.repeats)
        print(f"| {batch} | {dim} | {state} | {length} | {fwd:.1f} | {fwd_bwd:.1f} |")


if __name__ == "__main__":
    main()
