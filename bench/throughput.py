"""Training throughput of VideoMamba against ViT and against mamba_ssm's own Mamba modules.

    python -m bench.throughput                          # one GPU: 8/16/32/64 frames at 224^2, bf16
    python -m bench.throughput --tables mae arm supervised busy small-clip slws --frames 8 16
    python -m bench.throughput --tiny --tables vjepa mae arm supervised busy small-clip slws  # CPU smoke

Markdown tables (--tables picks them; encoder and vjepa by default), each row timed the same way
(warmup steps, then timed steps between CUDA syncs, peak memory of the timed steps), on random clips:

  (a) encoder forward+backward on full clips (every token of every clip; no optimizer step):
      vjm VideoMamba per scan backend, ViT of the same size (timm blocks, SDPA attention), and
      the same VideoMamba built from mamba_ssm's `Mamba` modules (two per layer: forward and
      flipped sequence, averaged), with the same patch embedding, positions and RMSNorms;
  (b) the full V-JEPA training step of --fname (target encoder, context encoder and predictor
      per mask, AdamW, EMA), for vjm VideoMamba per scan backend and for ViT; the predictor is
      the config's in both;
  mae, arm, supervised: the training step of the objective's config (--mae-fname, --arm-fname,
      --supervised-fname: VideoMAE on K400, ARM's IN-1K recipe with clusters of the largest divisor of
      the patch grid's side up to the config's cluster size, K400 fine-tuning), the same rows as (b):
      VideoMamba per scan backend and ViT (--models), MambaMLP (--arm-models) for ARM, whose
      encoder must be causal, so that its table has no ViT reference;
  busy: the GPU-busy fraction of the V-JEPA step at --busy-frames: CUDA kernel time per step (torch
      profiler) over the unprofiled wall time per step, and kernel launches per step;
  small-clip: the main job's config (--small-clip-fname) through the engine's own step with its data
      loading: steps/s, and per-stage timings (bench/small_clip.py);
  slws: SLWS's cost, the V-JEPA step of the first VideoMamba at --busy-frames without the regulariser
      and with it at --slws-rate, in turn (--slws-rounds times each): the host-bound step's own
      spread between runs is of the size of the cost, so each pair is compared in the same round.

Ratios divide a VideoMamba row's clips/s by the reference row's at the same frames. The batch
shrinks as frames grow so that tokens per batch stay constant. A row that does not fit prints
OOM; one that fails prints why; the run goes on.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import gc
import platform
import pstats
import re
import sys
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench import small_clip, train_step  # noqa: E402
from bench.commit import source_commit  # noqa: E402
from vjm.config import load_config  # noqa: E402
from vjm.masks import token_grid  # noqa: E402
from vjm.masks.grid import num_tokens  # noqa: E402
from vjm.models.encoder import TokenEncoder  # noqa: E402
from vjm.ops.direction import DIRECTION_BACKENDS as BACKENDS, resolve_direction_backend as resolve_backend  # noqa: E402
from vjm.models import build_encoder  # noqa: E402
from vjm.train.engine import autocast_dtype  # noqa: E402

Step = Callable[[int], None]  # runs training step i


# ----------------------------------------------------------------------------- the baseline


def mamba_ssm_unavailable(device: torch.device) -> str | None:
    if device.type != "cuda":
        return "mamba_ssm's kernels run on CUDA only"
    try:
        from mamba_ssm.modules.mamba_simple import Mamba  # noqa: F401
    except Exception as exc:  # ImportError, or an undefined symbol from a mismatched build
        return f"mamba_ssm does not import ({type(exc).__name__}: {exc})"
    return None


def mamba_ssm_path() -> str:
    """Which code path mamba_ssm's Mamba.forward takes: fused only when causal_conv1d imports."""
    try:
        import causal_conv1d  # noqa: F401
        return "mamba_ssm fused (mamba_inner_fn)"
    except Exception:
        return "mamba_ssm unfused (no causal_conv1d)"


class BiMambaLayer(nn.Module):
    """Pre-norm residual layer: RMSNorm, then one mamba_ssm Mamba on the sequence and another on
    the flipped sequence, outputs averaged (Vim / VideoMamba's bidirectional layer)."""

    def __init__(self, dim: int):
        super().__init__()
        from mamba_ssm.modules.mamba_simple import Mamba

        self.norm = nn.RMSNorm(dim, eps=1e-5)
        self.forward_mamba = Mamba(d_model=dim, d_state=16, d_conv=4, expand=2)
        self.backward_mamba = Mamba(d_model=dim, d_state=16, d_conv=4, expand=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        mixed = 0.5 * (self.forward_mamba(h) + self.backward_mamba(h.flip(1)).flip(1))
        return x + mixed  # x is fp32: the residual stream stays fp32, as in vjm's blocks


class MambaSsmVideoMamba(TokenEncoder):
    """VideoMamba with mamba_ssm's Mamba modules as mixers; vjm's patch embedding and positions."""

    def __init__(self, embed_dim: int, depth: int, patch_size: int, tubelet_size: int):
        super().__init__(embed_dim, patch_size, tubelet_size)
        self.layers = nn.ModuleList(BiMambaLayer(embed_dim) for _ in range(depth))
        self.norm = nn.RMSNorm(embed_dim, eps=1e-5)

    def encode(self, tokens, grid, keep):
        x = tokens.float()
        for layer in self.layers:
            x = layer(x)
        return self.norm(x)


# ----------------------------------------------------------------------------- steps and timing


def count_params(module: nn.Module) -> float:
    return sum(p.numel() for p in module.parameters()) / 1e6


def random_clips(cfg, batch: int, device: torch.device) -> torch.Tensor:
    data = cfg.data
    return torch.randn(batch, 3, data.frames_per_clip, data.crop_size, data.crop_size, device=device)


def encoder_step(cfg, batch: int, device: torch.device, baseline: bool = False) -> tuple[Step, float]:
    """Forward+backward of the config's encoder (or the mamba_ssm baseline of its size) on full clips."""
    encoder = build_encoder(cfg.model)
    if baseline:
        encoder = MambaSsmVideoMamba(encoder.embed_dim, len(encoder.stack.blocks), cfg.model.patch_size,
                                     cfg.model.tubelet_size)
    encoder = encoder.to(device).train()
    clips = [random_clips(cfg, batch, device) for _ in range(2)]
    dtype = autocast_dtype(cfg, device)

    def step(i: int) -> None:
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            out = encoder(clips[i % 2])
        out.float().mean().backward()
        encoder.zero_grad(set_to_none=True)

    return step, count_params(encoder)


def objective_step(cfg, batch: int, device: torch.device) -> tuple[Step, float]:
    """One training step of the config's objective, the one bench/train_step.py times."""
    step, objective = train_step.objective_step(cfg, batch, device)
    return step, count_params(objective.encoder)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step: Step, steps: int, warmup: int, device: torch.device) -> tuple[float, float]:
    """-> (seconds per step, peak GiB allocated during the timed steps; nan off CUDA)."""
    for i in range(warmup):
        step(i)
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for i in range(steps):
        step(i)
    sync(device)
    seconds = (time.perf_counter() - start) / steps
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    return seconds, peak


def measure(build: Callable[[], tuple[Step, float]], batch: int, args, device) -> dict | str:
    """clips/s, peak GiB and params of one row, or the reason it has no numbers."""
    try:
        step, params = build()
        seconds, peak = time_steps(step, args.steps, args.warmup, device)
        result = {"clips_per_s": batch / seconds, "peak_gib": peak, "params_m": params}
    except torch.OutOfMemoryError:
        result = "OOM"
    except Exception as exc:  # a kernel that fails must not end the other rows
        first_line = (str(exc).strip().splitlines() or [""])[0][:160]
        result = "OOM" if "out of memory" in str(exc) else f"failed: {type(exc).__name__}: {first_line}"
    step = None  # free this row's model and optimizer state before the next row is built
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result


# ----------------------------------------------------------------------------- the run


def split_models(models: list[str]) -> tuple[list[str], list[str]]:
    """-> (ViTs, VideoMambas); the first ViT is the reference of the ratios."""
    return [m for m in models if m.startswith("vit")], [m for m in models if not m.startswith("vit")]


def batch_for(frames: int, args) -> int:
    if args.batch_at_frames <= 0:
        return args.batch
    return max(1, args.batch * args.batch_at_frames // frames)


def tokens_per_clip(cfg) -> int:
    return num_tokens(token_grid(cfg.data.frames_per_clip, cfg.data.crop_size, cfg.model.patch_size,
                                 cfg.model.tubelet_size))


def config_for(args, model: str, frames: int, backend: str = "auto", objective: str = "vjepa",
               extra: tuple[str, ...] = ()):
    fname = getattr(args, f"{objective}_fname")
    overrides = [*args.overrides, f"model.name={model}", f"data.frames_per_clip={frames}",
                 f"data.crop_size={args.size}", f"model.scan_backend={backend}", *extra]
    if args.depth is not None:
        overrides.append(f"model.depth={args.depth}")
    if objective == "arm":  # video clips; the decoder's taps follow the depth; clusters must tile the patch grid
        side = args.size // load_config(fname, check_data=False).model.patch_size
        largest = load_config(fname, check_data=False).objective.cluster_size
        cluster = max(k for k in range(1, largest + 1) if side % k == 0)
        overrides += ["objective.decoder.taps=[]", f"objective.cluster_size={cluster}", "data.dataset=video"]
    return load_config(fname, overrides, check_data=False)  # synthetic clips: the data is not read


def scan_backends(args, device: torch.device,
                  dtype: torch.dtype | None) -> tuple[list[tuple[str, str]], list[str], str]:
    """-> ([(backend, label)] to run, [skip reasons], what "auto" picks here)."""
    probe = torch.zeros(1, 1, 1, device=device, dtype=dtype or torch.float32)  # what the mixers scan
    runs, skipped, auto = [], [], resolve_backend("auto", probe)
    for backend in dict.fromkeys(args.scan_backends):
        try:
            resolved = resolve_backend(backend, probe)
        except RuntimeError as exc:
            skipped.append(f"scan backend {backend}: {exc}")
            continue
        if backend == "auto" and resolved in args.scan_backends:
            skipped.append(f"scan backend auto: it picks {resolved} here, which has its own rows")
            continue
        runs.append((backend, f"auto ({resolved})" if backend == "auto" else backend))
    return runs, skipped, auto


def machine_line(device: torch.device) -> str:
    def version(module: str) -> str:
        try:
            return __import__(module).__version__
        except Exception:
            return "absent"

    commit = source_commit()
    where = (torch.cuda.get_device_name(device) if device.type == "cuda"
             else f"CPU {platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)")
    return (f"{where} | torch {torch.__version__} (CUDA {torch.version.cuda}) | triton {version('triton')} | "
            f"mamba_ssm {version('mamba_ssm')} | causal_conv1d {version('causal_conv1d')} | commit {commit}")


def ratio(row: dict | str, ref: dict | str | None) -> str:
    if isinstance(row, dict) and isinstance(ref, dict):
        return f"{row['clips_per_s'] / ref['clips_per_s']:.2f}x"
    return ""


def print_row(frames: int, batch: int, tokens: int, name: str, scan: str, r: dict | str, *ratios: str) -> None:
    if isinstance(r, dict):
        peak = "" if r["peak_gib"] != r["peak_gib"] else f"{r['peak_gib']:.1f}"  # nan off CUDA
        cells = [f"{r['params_m']:.1f}", f"{r['clips_per_s']:.1f}", peak]
    else:
        cells = ["", r, ""]
    print("| " + " | ".join([str(frames), str(batch), str(tokens), name, scan, *cells, *ratios]) + " |", flush=True)


def encoder_table(args, device, backends: list[tuple[str, str]], baseline_skip: str | None,
                  precision: str) -> None:
    vits, mambas = split_models(args.models)
    vs_vit = f"vs {vits[0]}" if vits else "vs ViT"
    print(f"\n## (a) Encoder forward+backward on full clips (all tokens of every clip, {precision}, "
          "loss = mean of the output tokens, no optimizer step). The mamba_ssm stack has two whole Mamba "
          "modules per layer, so its in/out projections are not shared between directions as vjm's are (see "
          "params); vjm's mamba_ssm scan row is the like-for-like comparison of kernels\n")
    print(f"| frames | batch | tokens/clip | encoder | scan | params M | clips/s | peak GiB | {vs_vit} | "
          "vs mamba_ssm stack |\n|---|---|---|---|---|---|---|---|---|---|", flush=True)
    for frames in args.frames:
        batch, tokens = batch_for(frames, args), tokens_per_clip(config_for(args, args.models[0], frames))
        row = functools.partial(print_row, frames, batch, tokens)
        ref_vit = None
        for model in vits:
            cfg = config_for(args, model, frames)
            r = measure(functools.partial(encoder_step, cfg, batch, device), batch, args, device)
            ref_vit = r if model == vits[0] else ref_vit
            row(model, "-", r, ratio(r, ref_vit), "")
        for model in mambas:
            ref_ssm = None
            if baseline_skip is None:
                cfg = config_for(args, model, frames)
                build = functools.partial(encoder_step, cfg, batch, device, baseline=True)
                ref_ssm = measure(build, batch, args, device)
                row(f"mamba_ssm Mamba x2 stack ({model} size)", mamba_ssm_path(), ref_ssm, ratio(ref_ssm, ref_vit),
                    "")
            for backend, label in backends:
                cfg = config_for(args, model, frames, backend)
                r = measure(functools.partial(encoder_step, cfg, batch, device), batch, args, device)
                row(f"vjm {model}", label, r, ratio(r, ref_vit), ratio(r, ref_ssm))


# Objective tables: title, what a step does.
OBJECTIVE_TABLES = {
    "vjepa": ("V-JEPA", "target encoder on the full clip, context encoder + predictor per mask, AdamW, EMA"),
    "mae": ("MAE", "encoder on the visible tokens, attention decoder, pixel loss on masked tokens, AdamW"),
    "arm": ("ARM", "causal encoder on the first n - 1 clusters, cross-attention decoder, AdamW"),
    "supervised": ("supervised (fine-tuning)", "encoder on the full clip, classifier head, mixup / cutmix, AdamW"),
}


def objective_table(args, device, objective: str, backends: list[tuple[str, str]], auto: str, precision: str,
                    number: str) -> None:
    """The training step of `objective`'s config per frame count, ViT rows first (the references)."""
    title, what = OBJECTIVE_TABLES[objective]
    vits, mambas = split_models(args.arm_models if objective == "arm" else args.models)
    vs_vit = f"vs {vits[0]}" if vits else "vs ViT"
    fname = Path(getattr(args, f"{objective}_fname")).name
    print(f"\n## ({number}) {title} training step of {fname}: {what}; {precision}. ViT rows scan (predictor, "
          f"decoder) with the auto backend ({auto})\n")
    print(f"| frames | batch | tokens/clip | encoder | scan | params M | clips/s | peak GiB | {vs_vit} |\n"
          "|---|---|---|---|---|---|---|---|---|", flush=True)
    for frames in args.frames:
        batch = batch_for(frames, args)
        tokens = tokens_per_clip(config_for(args, (vits + mambas)[0], frames, objective=objective))
        row = functools.partial(print_row, frames, batch, tokens)
        ref_vit = None
        for model in vits:
            cfg = config_for(args, model, frames, objective=objective)
            r = measure(functools.partial(objective_step, cfg, batch, device), batch, args, device)
            ref_vit = r if model == vits[0] else ref_vit
            row(model, f"auto: {auto}", r, ratio(r, ref_vit))
        for model in mambas:
            for backend, label in backends:
                cfg = config_for(args, model, frames, backend, objective=objective)
                r = measure(functools.partial(objective_step, cfg, batch, device), batch, args, device)
                row(f"vjm {model}", label, r, ratio(r, ref_vit))


# Kernel names -> what they do; the first pattern that matches names the kind.
KERNEL_KINDS = (
    ("scan forward (vjm)", r"^scan_fwd_kernel"),
    ("scan backward (vjm)", r"^scan_bwd_kernel|^scan_adjoint_local_kernel"),
    ("conv + SiLU (vjm)", r"^conv_silu_"),
    ("scan forward (mamba_ssm)", r"selective_scan_fwd"),
    ("scan backward (mamba_ssm)", r"selective_scan_bwd"),
    ("causal_conv1d", r"causal_conv1d"),
    ("matmul", r"gemm|nvjet|cutlass|xmma|cublas|splitK"),
    ("norm", r"norm"),
    ("optimizer", r"adam|multi_tensor"),
    ("reduction", r"reduce_kernel"),
    ("copy / cast / cat", r"copy|cat"),
    ("elementwise", r"elementwise|vectorized"),
    ("other", r""),
)


def kernel_kind(name: str) -> str:
    return next(kind for kind, pattern in KERNEL_KINDS if re.search(pattern, name, re.IGNORECASE))


def profiled(step: Step, device: torch.device, steps: int = 1) -> "torch.autograd.profiler_util.EventList":
    """The summed events of `steps` profiled steps (host ops, and the CUDA kernels on a GPU)."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        for i in range(steps):
            step(i)
        sync(device)
    return prof.key_averages()


def cuda_kernels(events) -> list[tuple[str, int, float]]:
    """(name, calls, ms) of every CUDA kernel among profiled `events`."""
    return [(e.key, e.count, e.self_device_time_total / 1e3) for e in events
            if e.device_type == torch.autograd.DeviceType.CUDA and not getattr(e, "is_user_annotation", False)]


def profile_kinds(title: str, step: Step, device: torch.device) -> "torch.autograd.profiler_util.EventList":
    """Time steps unprofiled, profile one more, print its CUDA time by kind of kernel; -> the events."""
    seconds, _ = time_steps(step, steps=3, warmup=2, device=device)
    events = profiled(step, device)
    print(f"\n### {title}\n\nStep wall time (unprofiled): {1e3 * seconds:.1f} ms", flush=True)
    if device.type != "cuda":
        return events
    kinds: dict[str, list[float]] = {}
    for name, calls, ms in cuda_kernels(events):
        calls_ms = kinds.setdefault(kernel_kind(name), [0, 0.0])
        calls_ms[0] += calls
        calls_ms[1] += ms
    total = sum(ms for _, ms in kinds.values())
    print(f"CUDA kernels {total:.1f} ms, {100 * total / (1e3 * seconds):.0f}% of the wall time "
          "(the rest: the GPU waits for the host)\n\n| kernels | calls | ms | share |\n|---|---|---|---|")
    for kind, (calls, ms) in sorted(kinds.items(), key=lambda item: -item[1][1]):
        print(f"| {kind} | {calls} | {ms:.1f} | {100 * ms / total:.0f}% |")
    return events


def busy_table(args, device: torch.device, backends: list[tuple[str, str]], auto: str) -> None:
    """GPU-busy fraction of the V-JEPA step: kernel time of profiled steps over unprofiled wall time."""
    vits, mambas = split_models(args.models)
    frames = args.busy_frames
    batch = batch_for(frames, args)
    print(f"\n## GPU-busy fraction of the V-JEPA step at {frames} frames, batch {batch}: CUDA kernel time per "
          f"step (torch.profiler, {args.busy_steps} steps) over the wall time per step ({args.steps} unprofiled "
          "steps); the rest of the wall time the GPU waits for the host\n")
    print("| encoder | scan | wall ms/step | kernel ms/step | GPU busy | kernel launches/step |\n"
          "|---|---|---|---|---|---|", flush=True)
    rows = [(m, "auto", f"auto: {auto}") for m in vits] + [(m, b, label) for m in mambas for b, label in backends]
    for model, backend, label in rows:
        cells = ["", "", "", ""]
        try:
            step, _ = objective_step(config_for(args, model, frames, backend), batch, device)
            seconds, _ = time_steps(step, args.steps, args.warmup, device)
            cells[0] = f"{1e3 * seconds:.1f}"
            if device.type == "cuda":
                kernels = cuda_kernels(profiled(step, device, args.busy_steps))
                kernel_ms = sum(ms for _, _, ms in kernels) / args.busy_steps
                launches = sum(calls for _, calls, _ in kernels) / args.busy_steps
                cells[1:] = [f"{kernel_ms:.1f}", f"{100 * kernel_ms / (1e3 * seconds):.0f}%", f"{launches:.0f}"]
            else:
                cells[1] = "no CUDA device"
        except Exception as exc:  # a row that fails must not end the table
            cells[1] = f"failed: {type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:120]}"
        step = None
        gc.collect()
        print(f"| {model} | {label} | " + " | ".join(cells) + " |", flush=True)


def slws_table(args, device: torch.device, backends: list[tuple[str, str]]) -> None:
    """The V-JEPA step without SLWS and with it, alternating, each pair compared within its round."""
    _, mambas = split_models(args.models)
    if not mambas or not backends:
        print("\n- skipped the SLWS table: it needs a VideoMamba in --models and a scan backend")
        return
    model, (backend, label) = mambas[0], backends[0]
    frames = args.busy_frames
    batch = batch_for(frames, args)
    print(f"\n## SLWS's cost: the V-JEPA step of vjm {model} ({label} scan) at {frames} frames, batch {batch}, "
          f"without and with SLWS at rate {args.slws_rate:g}, in turn\n")
    print("| round | regulariser | clips/s | peak GiB | vs without, same round |\n|---|---|---|---|---|", flush=True)
    for round_ in range(1, args.slws_rounds + 1):
        without = None
        for rate in (0.0, args.slws_rate):
            extra = (f"regularizers=[{{kind: slws, rate: {rate}}}]",)
            cfg = config_for(args, model, frames, backend, extra=extra)
            r = measure(functools.partial(objective_step, cfg, batch, device), batch, args, device)
            without = r if rate == 0 else without
            cells = (f"{r['clips_per_s']:.1f} | {r['peak_gib']:.1f}" if isinstance(r, dict) else f"{r} | -")
            name = "none (slws at rate 0)" if rate == 0 else f"slws, rate {rate:g}"
            print(f"| {round_} | {name} | {cells} | {ratio(r, without) if rate else '1.00x'} |", flush=True)


def profile(args, device: torch.device, backends: list[tuple[str, str]], baseline_skip: str | None) -> None:
    """Where the time goes: the encoder step of the first VideoMamba (and of the mamba_ssm stack)
    and its V-JEPA step, by kind of kernel; then the V-JEPA step's top ops, device and host."""
    _, mambas = split_models(args.models)
    if not mambas or not backends:
        print("\n--profile: no VideoMamba model or no usable scan backend to profile", flush=True)
        return
    model, (backend, label), frames = mambas[0], backends[0], args.profile_frames
    batch = batch_for(frames, args)
    cfg = config_for(args, model, frames, backend)
    print(f"\n## Profiles at {frames} frames, batch {batch}", flush=True)
    profile_kinds(f"Encoder forward+backward, vjm {model}, scan {label}", encoder_step(cfg, batch, device)[0], device)
    if baseline_skip is None:
        profile_kinds(f"Encoder forward+backward, mamba_ssm Mamba x2 stack ({model} size)",
                      encoder_step(cfg, batch, device, baseline=True)[0], device)
    gc.collect()
    step, _ = objective_step(cfg, batch, device)
    events = profile_kinds(f"V-JEPA step, vjm {model}, scan {label}", step, device)
    kind = "cuda" if device.type == "cuda" else "cpu"
    print(f"\nTop 15 ops by self {kind.upper()} time, summed over calls:\n", flush=True)
    print(events.table(sort_by=f"self_{kind}_time_total", row_limit=15, max_name_column_width=70), flush=True)
    if device.type == "cuda":  # where the host's time goes when it, not the GPU, sets the pace
        print("\nTop 15 ops by self CPU time (the host side: Python, dispatch, kernel launches):\n", flush=True)
        print(events.table(sort_by="self_cpu_time_total", row_limit=15, max_name_column_width=70), flush=True)
        # The profiler lumps Python into the autograd nodes' self time; cProfile splits it by function.
        host = cProfile.Profile()
        host.enable()
        step(0)
        sync(device)
        host.disable()
        print("\nHost Python of one step (cProfile, top 25 functions by own time):\n", flush=True)
        pstats.Stats(host, stream=sys.stdout).sort_stats("tottime").print_stats(25)


def small_clip_table(args, device: torch.device) -> None:
    """The main job's config at its own size (only --set applies), with its data loading."""
    overrides = [*args.overrides, "model.depth=2", "data.num_workers=0"] if args.tiny else args.overrides
    small_clip.small_clip_table(args.small_clip_fname, overrides, device, args.small_clip_steps,
                                args.small_clip_staged_steps, args.warmup)


TABLES = ("encoder", "vjepa", "mae", "arm", "supervised", "busy", "small-clip", "slws")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tables", nargs="+", default=["encoder", "vjepa"], choices=TABLES, help="tables to print")
    parser.add_argument("--tiny", action="store_true",
                        help="a smoke test on the CPU: 4 frames at 64^2, batch 2, depth 2, 1 warmup + 1 timed step")
    parser.add_argument("--fname", dest="vjepa_fname", default=str(REPO / "configs/vjepa_k400_tiny.yaml"),
                        help="V-JEPA config: masks, predictor, optimiser and dtype of the encoder and V-JEPA rows")
    parser.add_argument("--mae-fname", default=str(REPO / "configs/mae_k400_tiny.yaml"))
    parser.add_argument("--arm-fname", default=str(REPO / "configs/arm_in1k_base.yaml"))
    parser.add_argument("--supervised-fname", default=str(REPO / "configs/eval/finetune_k400_tiny.yaml"))
    parser.add_argument("--arm-models", nargs="+", default=["mambamlp_tiny", "mambamlp_base"],
                        help="causal encoders of the ARM rows")
    parser.add_argument("--busy-frames", type=int, default=16, help="frames of the GPU-busy rows")
    parser.add_argument("--busy-steps", type=int, default=3, help="profiled steps per GPU-busy row")
    parser.add_argument("--slws-rate", type=float, default=0.5, help="SLWS rate of the slws table's rows")
    parser.add_argument("--slws-rounds", type=int, default=2, help="slws table: rounds of (without, with)")
    parser.add_argument("--small-clip-fname", default=str(REPO / "configs/vjepa_tiny.yaml"))
    parser.add_argument("--small-clip-steps", type=int, default=40, help="free-running small-clip steps")
    parser.add_argument("--small-clip-staged-steps", type=int, default=15, help="small-clip steps timed by stage")
    parser.add_argument("--set", dest="overrides", nargs="+", default=[], help="config overrides key=value")
    parser.add_argument("--models", nargs="+", default=["videomamba_tiny", "vit_tiny"],
                        help="encoders; names starting with 'vit' are the references of the ratios (the first one)")
    parser.add_argument("--scan-backends", nargs="+", default=["auto", "triton", "mamba_ssm", "torch"],
                        choices=["auto", *BACKENDS], help="one VideoMamba row per backend that can run here")
    parser.add_argument("--frames", type=int, nargs="+", default=[8, 16, 32, 64])
    parser.add_argument("--size", type=int, default=224, help="crop side in pixels")
    parser.add_argument("--batch", type=int, default=32, help="clips per batch at --batch-at-frames frames")
    parser.add_argument("--batch-at-frames", type=int, default=16,
                        help="other frame counts get batch * this / frames (min 1): constant tokens per "
                             "batch; 0 = --batch for every frame count")
    parser.add_argument("--depth", type=int, default=None, help="override every encoder's depth (quick tests)")
    parser.add_argument("--steps", type=int, default=8, help="timed steps per row")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per row (kernel compilation)")
    parser.add_argument("--profile", action="store_true", help="profile the encoder step (vjm, the mamba_ssm stack) and the V-JEPA step of the first VideoMamba")
    parser.add_argument("--profile-frames", type=int, default=16)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    if args.tiny:
        args.device, args.frames, args.size, args.batch, args.batch_at_frames = "cpu", [4], 64, 2, 0
        args.depth, args.steps, args.warmup, args.busy_frames, args.busy_steps = 2, 1, 1, 4, 1
        args.scan_backends, args.small_clip_steps, args.small_clip_staged_steps = ["auto"], 1, 1
    for name in ("steps", "batch", "size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.warmup < 0:
        parser.error(f"--warmup must be at least 0, got {args.warmup}")
    return args


def main() -> None:
    args = parse_args()
    device = torch.device(args.device)
    started = time.perf_counter()
    for table in args.tables:  # fail now on a bad name, frame count or size, not after minutes of rows
        if table in OBJECTIVE_TABLES or table in ("encoder", "busy"):
            objective = table if table in OBJECTIVE_TABLES else "vjepa"
            for model in args.arm_models if objective == "arm" else args.models:
                build_encoder(config_for(args, model, args.frames[0], objective=objective).model)
                for frames in args.frames[1:]:
                    config_for(args, model, frames, objective=objective)
    dtype = autocast_dtype(config_for(args, args.models[0], args.frames[0]), device)
    precision = "fp32" if dtype is None else f"{str(dtype).removeprefix('torch.')} autocast"
    vits, mambas = split_models(args.models)
    backends, skipped, auto = scan_backends(args, device, dtype)
    baseline_skip = mamba_ssm_unavailable(device) if mambas else None
    if baseline_skip:
        skipped.append(f"the mamba_ssm Mamba stack rows: {baseline_skip}")

    print(f"# vjm training throughput\n\n{machine_line(device)}\n")
    print(f"Random clips at {args.size}^2; batch per frame count: "
          + ", ".join(f"{f} frames -> {batch_for(f, args)}" for f in args.frames)
          + f"; {args.warmup} warmup + {args.steps} timed steps per row; clips/s over the timed steps; peak GiB = "
          "torch.cuda.max_memory_allocated during them (model, optimizer state, activations). Ratios: clips/s of "
          "the row over the reference's at the same frames.\n")
    for reason in skipped:
        print(f"- skipped {reason}")
    numbers = iter("bcdefgh")
    for table in args.tables:
        if table == "encoder":
            encoder_table(args, device, backends, baseline_skip, precision)
        elif table in OBJECTIVE_TABLES:
            objective_table(args, device, table, backends, auto, precision, next(numbers))
        elif table == "busy":
            busy_table(args, device, backends, auto)
        elif table == "small-clip":
            small_clip_table(args, device)
        elif table == "slws":
            slws_table(args, device, backends)
    if args.profile:
        profile(args, device, backends, baseline_skip)
    print(f"\ntotal {time.perf_counter() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
