"""Time the selective-scan backends at VideoMamba shapes and set them against two floors.

    python bench/scan.py                      # Ti and S widths, L = 1568 .. 12544, bf16, z, D
    python bench/scan.py --dims 384 --lengths 1568 --json out.json
    python bench/scan.py --triton-configs "FWD_TILE=16,BWD_TILE=4" "FWD_TILE=32"
    python bench/scan.py --backends triton --layouts contiguous channel_major mixer

For each backend, forward and forward+backward are timed with CUDA events (warm-up, then the
median of repeats). Two floors frame the numbers:
  bytes: each input read once and each output written once, over the copy bandwidth measured
         here (a large device-to-device copy, bytes read + written);
  exp:   the B*E*L*N exponentials (one per state entry and step; twice for forward+backward)
         at the special-function rate: 16 per clock per SM times the SM count and SM clock.
The batch shrinks as L grows (B*L fixed at 32*1568) so memory stays that of the first row.
The torch reference is a Python loop over steps: it is timed only at the shortest L.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.commit import source_commit  # noqa: E402
from vjm.ops import scan_mamba_ssm, scan_triton  # noqa: E402
from vjm.ops.backends import mamba_ssm_import_error, triton_import_error  # noqa: E402
from vjm.ops.scan_torch import selective_scan_torch  # noqa: E402

SFU_EXP_PER_CLOCK_PER_SM = 16  # MUFU.EX2 throughput on sm_80 .. sm_90


def copy_bandwidth(nbytes: int = 2 << 30) -> float:
    """Bytes per second of a device-to-device copy, counting bytes read plus bytes written."""
    src = torch.empty(nbytes, dtype=torch.uint8, device="cuda").random_(0, 255)
    dst = torch.empty_like(src)
    times = time_ms(lambda: dst.copy_(src), warmup=3, repeats=10)
    del src, dst
    return 2 * nbytes / (times / 1e3)


def sm_clock_hz() -> tuple[float, str]:
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(torch.cuda.current_device())
        mhz = pynvml.nvmlDeviceGetMaxClockInfo(handle, pynvml.NVML_CLOCK_SM)
        return mhz * 1e6, f"{mhz} MHz (NVML max SM clock)"
    except Exception as exc:  # no NVML: the H100 SXM's typical sustained clock
        return 1.75e9, f"1750 MHz (assumed; NVML unavailable: {type(exc).__name__})"


def time_ms(fn, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def make_inputs(batch, dim, state, length, dtype, seed=0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, device="cuda")  # noqa: E731
    return dict(
        u=r(batch, dim, length).to(dtype), delta=(r(batch, dim, length) * 0.5 - 1).to(dtype),
        A=-torch.rand(dim, state, generator=g, device="cuda") * 2 - 0.1,
        B=r(batch, state, length).to(dtype), C=r(batch, state, length).to(dtype),
        D=r(dim), z=r(batch, dim, length).to(dtype), delta_bias=r(dim) * 0.1,
    )


def lay_out(inputs, layout: str):
    """The inputs in one of the layouts the model can hand the scan:
    contiguous     (batch, E, L) and (batch, N, L) tensors;
    channel_major  u, delta, z as (E, batch x L) matrices (MambaMixer's layout), B and C contiguous;
    mixer          channel_major, and B and C handed over as column slices of the bf16
                   (batch x L, dt_rank + 2N) projection, as the mixer produces them (the scan
                   copies them to fp32; reading them in place was 1.45x slower, PERFORMANCE.md)."""
    if layout == "contiguous":
        return inputs
    laid = dict(inputs)
    batch, dim, length = inputs["u"].shape
    for key in ("u", "delta"):
        laid[key] = inputs[key].transpose(0, 1).contiguous().transpose(0, 1)
    xz = torch.empty(2 * dim, batch, length, dtype=inputs["z"].dtype, device="cuda")
    xz[dim:] = inputs["z"].transpose(0, 1)
    laid["z"] = xz.transpose(0, 1)[:, dim:]
    if layout == "mixer":
        state, rank = inputs["B"].shape[1], (dim // 2 + 15) // 16  # dt_rank of a d_model = E / 2 mixer
        x_dbl = torch.empty(batch, length, rank + 2 * state, dtype=inputs["B"].dtype, device="cuda")
        x_dbl[..., rank : rank + state] = inputs["B"].transpose(1, 2)
        x_dbl[..., rank + state :] = inputs["C"].transpose(1, 2)
        laid["B"], laid["C"] = (x_dbl[..., rank + i * state : rank + (i + 1) * state].transpose(1, 2) for i in (0, 1))
    return laid


def min_bytes(inputs, backward: bool) -> int:
    """Each input read once and each output written once (gradients are outputs too)."""
    read = sum(t.numel() * t.element_size() for t in inputs.values())
    out = inputs["u"].numel() * inputs["u"].element_size()
    if not backward:
        return read + out
    # forward (read inputs, write y) + backward (read inputs and dy, write a gradient per input)
    return (read + out) + (read + out) + read


def backends():
    found = {"torch": selective_scan_torch}
    if mamba_ssm_import_error() is None:
        found["mamba_ssm"] = scan_mamba_ssm.selective_scan_mamba_ssm
    if triton_import_error() is None:
        found["triton"] = scan_triton.selective_scan_triton
    return found


def apply_triton_config(text: str) -> None:
    for item in filter(None, text.split(",")):
        key, value = item.split("=")
        if not hasattr(scan_triton, key):
            raise ValueError(f"--triton-configs: scan_triton has no setting {key!r}")
        setattr(scan_triton, key, int(value) if value.isdigit() else value)


def bench_one(fn, inputs, backward: bool, warmup: int, repeats: int) -> float:
    kwargs = dict(delta_softplus=True)
    if not backward:
        with torch.no_grad():
            return time_ms(lambda: fn(**inputs, **kwargs), warmup, repeats)
    leaves = {k: v.detach().requires_grad_(True) for k, v in inputs.items()}  # views keep their strides
    dout = torch.randn_like(inputs["u"])

    def step():
        for t in leaves.values():
            t.grad = None
        fn(**leaves, **kwargs).backward(dout)

    return time_ms(step, warmup, repeats)


def outputs_and_grads(fn, inputs, dout):
    leaves = {k: v.detach().requires_grad_(True) for k, v in inputs.items()}
    out = fn(**leaves, delta_softplus=True)
    out.backward(dout)
    return [out.float()] + [leaves[k].grad.float() for k in inputs]


def max_rel_diff(values, reference) -> float:
    return max(((a - b).norm() / b.norm()).item() for a, b in zip(values, reference))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dims", type=int, nargs="+", default=[384, 768], help="E (Ti: 384, S: 768)")
    parser.add_argument("--lengths", type=int, nargs="+", default=[1568, 3136, 6272, 12544])
    parser.add_argument("--state", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=32 * 1568, help="batch * L, kept fixed")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--backends", nargs="+", help="time only these (default: every one that imports)")
    parser.add_argument("--triton-configs", nargs="*", default=[""],
                        help="scan_triton settings to time, e.g. 'FWD_TILE=16,BWD_TILE=4'")
    parser.add_argument("--layouts", nargs="+", default=["contiguous"], choices=["contiguous", "channel_major", "mixer"],
                        help="input layouts to time the Triton scan in (see lay_out)")
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench/scan.py needs a CUDA device")

    dtype = getattr(torch, args.dtype)
    props = torch.cuda.get_device_properties(0)
    clock, clock_note = sm_clock_hz()
    exp_rate = SFU_EXP_PER_CLOCK_PER_SM * props.multi_processor_count * clock
    bandwidth = copy_bandwidth()
    commit = source_commit()
    print(f"# device: {props.name}, {props.multi_processor_count} SMs; torch {torch.__version__}; commit {commit}")
    print(f"# copy bandwidth (read + write): {bandwidth / 1e12:.2f} TB/s")
    print(f"# exp floor: {SFU_EXP_PER_CLOCK_PER_SM} exp/clk/SM x {props.multi_processor_count} SMs x "
          f"{clock_note} = {exp_rate / 1e12:.2f} Texp/s")
    print(f"# {args.dtype} u, delta, z, B, C; fp32 A, D, delta_bias; softplus; batch = {args.tokens} / L")

    fns = backends()
    if args.backends:
        fns = {k: v for k, v in fns.items() if k in args.backends or k == "torch"}
    rows = []
    for dim in args.dims:
        for length in args.lengths:
            batch = max(1, args.tokens // length)
            inputs = make_inputs(batch, dim, args.state, length, dtype)
            elements = batch * dim * length * args.state
            check = length == min(args.lengths) and dim == args.dims[0]
            if check:  # each fast backend (and Triton setting) against the reference, at batch 2
                small = {k: (v[:2] if v.dim() == 3 else v) for k, v in inputs.items()}
                dout = torch.randn_like(small["u"])
                reference = outputs_and_grads(fns["torch"], small, dout)
            for name, fn in fns.items():
                if name == "torch" and (length != min(args.lengths) or args.backends and "torch" not in args.backends):
                    continue
                configs = args.triton_configs if name == "triton" else [""]
                layouts = args.layouts if name == "triton" else ["contiguous"]
                for config, layout in [(c, lay) for c in configs for lay in layouts]:
                    saved = {k: v for k, v in vars(scan_triton).items() if k.isupper()}
                    apply_triton_config(config)
                    laid = lay_out(inputs, layout)
                    label = ", ".join(filter(None, [config, "" if layout == "contiguous" else layout]))
                    if check and name != "torch":
                        diff = max_rel_diff(outputs_and_grads(fn, lay_out(small, layout), dout), reference)
                        print(f"# {name} {label}: max rel. diff from torch (output, grads) {diff:.1e}")
                    repeats = 3 if name == "torch" else args.repeats
                    warmup = 1 if name == "torch" else 3
                    for backward in (False, True):
                        ms = bench_one(fn, laid, backward, warmup, repeats)
                        nbytes = min_bytes(inputs, backward)
                        exps = elements * (2 if backward else 1)
                        rows.append(dict(
                            backend=name + (f" [{label}]" if label else ""), E=dim, L=length,
                            batch=batch, pass_="fwd+bwd" if backward else "fwd", ms=ms,
                            tb_s=nbytes / (ms / 1e3) / 1e12, byte_floor_ms=nbytes / bandwidth * 1e3,
                            exp_floor_ms=exps / exp_rate * 1e3,
                        ))
                        r = rows[-1]
                        print(f"  {r['backend']:>12} E={dim} L={length} B={batch} {r['pass_']:>7}: "
                              f"{ms:8.3f} ms", flush=True)
                    for k, v in saved.items():
                        setattr(scan_triton, k, v)
                    del laid
            del inputs
            torch.cuda.empty_cache()

    print()
    print("| backend | E | L | batch | pass | ms | GB/s moved | % of copy BW | byte floor ms | exp floor ms |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['backend']} | {r['E']} | {r['L']} | {r['batch']} | {r['pass_']} | {r['ms']:.3f} | "
              f"{r['tb_s'] * 1e3:.0f} | {100 * r['tb_s'] * 1e12 / bandwidth:.1f} | "
              f"{r['byte_floor_ms']:.3f} | {r['exp_floor_ms']:.3f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(dict(device=props.name, commit=commit, bandwidth=bandwidth,
                                                   exp_rate=exp_rate, rows=rows), indent=1))


if __name__ == "__main__":
    main()
