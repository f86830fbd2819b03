"""What the Triton scan kernels cost beside their run time: registers, spills, launch overhead.

    python bench/scan_profile.py                        # registers and spills of every kernel variant
    python bench/scan_profile.py --launch-overhead      # host microseconds per call, Triton vs torch
    ncu --clock-control none -k regex:scan_ --section WarpStateStats \\
        python bench/scan_profile.py --shapes 32,384,1568    # one forward+backward for Nsight Compute

Each shape (batch, E, L) runs one forward+backward in the mixer's layout (bench/scan.py's
`lay_out`), bf16 with z, D, delta bias and softplus, which compiles and launches every kernel the
training step uses, once: a short program to hand to Nsight Compute. Then it prints, for every
compiled variant, the registers per thread and the bytes spilled (from Triton's compiled kernel).

--launch-overhead times calls that do almost no GPU work (batch 1, 32 channels, 64 steps), so
the host's cost per call is what is measured: the scan forward through vjm's Python wrapper, one
bare launch of its kernel through Triton's JIT entry point, the same compiled kernel launched
directly, and a small torch op for scale.
"""

from __future__ import annotations

import argparse
import inspect
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.scan import lay_out, make_inputs  # noqa: E402
from vjm.ops import scan_triton, scan_triton_kernels  # noqa: E402

KERNELS = ("scan_fwd_kernel", "scan_adjoint_local_kernel", "scan_bwd_kernel")


def parse_shape(text: str) -> tuple[int, int, int]:
    try:
        batch, dim, length = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a shape is batch,E,L (three integers), got {text!r}") from None
    return batch, dim, length


def forward_backward(batch: int, dim: int, length: int) -> None:
    inputs = lay_out(make_inputs(batch, dim, 16, length, torch.bfloat16), "mixer")
    leaves = {k: v.detach().requires_grad_(True) for k, v in inputs.items()}
    out = scan_triton.selective_scan_triton(**leaves, delta_softplus=True)
    out.backward(torch.randn_like(out))
    torch.cuda.synchronize()


def compiled_variants(kernel) -> list:
    """Triton's compiled kernels of one JIT function (the cache's layout moves between versions)."""
    found = []
    for cache in getattr(kernel, "device_caches", {}).values():
        found += list(cache[0].values())
    for cache in getattr(kernel, "cache", {}).values():  # older Triton
        found += list(cache.values())
    return found


def print_resources() -> None:
    print("| kernel | variant | registers/thread | spilled bytes | shared bytes | warps |\n|---|---|---|---|---|---|")
    for name in KERNELS:
        for i, compiled in enumerate(compiled_variants(getattr(scan_triton_kernels, name))):
            meta = compiled.metadata
            print(f"| {name} | {i} | {compiled.n_regs} | {compiled.n_spills} | {meta.shared} | {meta.num_warps} |")


def host_us(fn, calls: int) -> float:
    for _ in range(10):
        fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / calls * 1e6


def launch_overhead(calls: int) -> None:
    inputs = scan_triton.prepare(*make_inputs(1, 32, 16, 64, torch.bfloat16).values())
    u = inputs[0]
    forward = lambda: scan_triton.scan_forward(*inputs, True, False, False)  # noqa: E731
    captured = {}

    def capture(*args, grid, warmup, **kwargs):  # the scan's own arguments to the kernel
        captured.update(args=args, kwargs=kwargs, grid=grid)
        return jit_run(*args, grid=grid, warmup=warmup, **kwargs)

    kernel = scan_triton_kernels.scan_fwd_kernel
    jit_run, kernel.run = kernel.run, capture
    try:
        forward()
    finally:
        kernel.run = jit_run
    args, kwargs, grid = captured["args"], captured["kwargs"], captured["grid"]
    compiled = jit_run(*args, grid=grid, warmup=False, **kwargs)
    params = list(inspect.signature(kernel.fn).parameters)
    options = {k: v for k, v in kwargs.items() if k not in params}  # num_warps and the like
    bound = inspect.signature(kernel.fn).bind(*args, **{k: v for k, v in kwargs.items() if k in params})
    direct = compiled[grid]
    ordered = [bound.arguments[p] for p in params]
    rows = [
        ("vjm scan_forward (wrapper, 1 launch)", forward),
        ("scan_fwd_kernel[grid](...) (Triton JIT entry)", lambda: kernel[grid](*args, **kwargs)),
        ("compiled kernel launched directly", lambda: direct(*ordered)),
        ("torch.add of two 32-element tensors", lambda: torch.add(u, u)),
    ]
    print(f"\nHost time per call, {calls} calls each (options outside the signature: {sorted(options)}):\n")
    print("| call | us per call |\n|---|---|")
    for label, fn in rows:
        print(f"| {label} | {host_us(fn, calls):.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", type=parse_shape, nargs="+", default=[(32, 384, 1568), (128, 384, 392)],
                        help="batch,E,L of each forward+backward")
    parser.add_argument("--set", nargs="*", default=[], help="scan_triton settings, e.g. BWD_TILE=4")
    parser.add_argument("--launch-overhead", action="store_true")
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench/scan_profile.py needs a CUDA device")
    for item in args.set:
        key, value = item.split("=")
        if not hasattr(scan_triton, key):
            raise SystemExit(f"--set: scan_triton has no setting {key!r}")
        setattr(scan_triton, key, int(value))
    for shape in args.shapes:
        forward_backward(*shape)
    print_resources()
    if args.launch_overhead:
        launch_overhead(args.calls)


if __name__ == "__main__":
    main()
