"""Quality of the main job: pre-train on the toy videos, probe both toy tasks, compare with random init.

    python -m evals.quality --budget small                   # CPU: a short run, minutes
    python -m evals.quality --budget large --device cuda     # GPU: the run docs/QUALITY.md reports
    python -m evals.quality --steps 300 --probe-epochs 10    # an explicit budget
    python -m evals.quality --checkpoint runs/vjepa_tiny/latest.pt   # probe a finished run, no pre-training

1. Pre-trains configs/vjepa_tiny.yaml (V-JEPA, VideoMamba-Tiny) for the budget's optimiser steps
   (overrides: run folder, epochs and steps per epoch, warmup = 10% of the steps, toy set size).
2. Probes the digit and direction tasks (configs/eval/toy_*.yaml) with the attentive probe on the
   frozen encoder the objective evaluates by default (with --encoders, any of its encoders) and on
   the same encoder randomly initialised: the control. Features are computed once per encoder,
   shared by the tasks.
3. Prints a table, method x task, top-1 and top-5 accuracy in percent, and writes it as Markdown
   and JSON under the output folder.

Everything resumes: rerunning the same command reuses the pre-training checkpoint, the cached
features and finished probes.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script
    sys.path.insert(0, str(REPO))

from launch.local import launch_local  # noqa: E402
from vjm.config import Config, config_from_dict, load_config  # noqa: E402
from vjm.console import setup_logging  # noqa: E402
from vjm.eval.config import load_eval_config  # noqa: E402
from vjm.eval.frozen import encoder_choices, load_frozen_encoder  # noqa: E402
from vjm.eval.probe import run_probe  # noqa: E402
from vjm.train.checkpoint import load_checkpoint  # noqa: E402
from vjm.train.distributed import resolve_device  # noqa: E402

logger = logging.getLogger("evals.quality")

MAIN_CONFIG = REPO / "configs" / "vjepa_tiny.yaml"
TASKS = ("digit", "direction")


@dataclass(frozen=True)
class Budget:
    """None = the value of configs/vjepa_tiny.yaml (steps: its epochs x steps per epoch)."""

    steps: int | None  # pre-training optimiser steps
    probe_epochs: int | None  # None = the probe configs' epochs
    toy_num_train: int | None
    toy_num_val: int | None


BUDGETS = {
    # A CPU run of about 20 minutes: shows the pipeline end to end; too short for a clear margin.
    "small": Budget(steps=60, probe_epochs=None, toy_num_train=256, toy_num_val=128),
    # A GPU run that fits one 10-minute job: the main job's toy set, pre-trained for 512 steps.
    "large": Budget(steps=512, probe_epochs=None, toy_num_train=None, toy_num_val=None),
}

# --encoders name for the control: the pre-trained architecture with random weights.
RANDOM = "random"


def encoder_rows(objective: str, asked: list[str] | None) -> dict[str, str]:
    """{--encoders name: table row label}; by default the objective's evaluated encoder, then the control.

    Raises ValueError naming the valid choices for a name that is neither one of the objective's
    encoders nor ``random``."""
    encoders, default = encoder_choices(objective)
    asked = asked or [default, RANDOM]
    unknown = [name for name in asked if name not in (*encoders, RANDOM)]
    if unknown:
        raise ValueError(f"--encoders {' '.join(unknown)}: objective {objective!r} has the encoders "
                         f"{', '.join(encoders)}; choose from those and {RANDOM!r} (the random-init control)")
    return {name: "random init (control)" if name == RANDOM else f"{objective}, {name}" for name in asked}


def pretrain_config(budget: Budget, out: Path, device: str, num_workers: int | None,
                    extra: list[str] = ()) -> Config:
    """configs/vjepa_tiny.yaml with the budget's length and toy set; its own run folder per budget.

    ``extra`` overrides (``--set``) come last, so they can change the recipe, not only its length."""
    base = load_config(MAIN_CONFIG)
    num_train = budget.toy_num_train or base.data.toy_num_train
    num_val = budget.toy_num_val or base.data.toy_num_val
    per_epoch = num_train // base.data.batch_size
    steps = budget.steps or base.train.epochs * (base.train.steps_per_epoch or per_epoch)
    epochs = math.ceil(steps / per_epoch)
    steps_per_epoch = math.ceil(steps / epochs)
    workers = num_workers if num_workers is not None else (1 if device == "cpu" else base.data.num_workers)
    overrides = [
        f"run.folder={out / f'vjepa_tiny_{epochs * steps_per_epoch}steps_n{num_train}'}",
        f"train.epochs={epochs}", f"train.steps_per_epoch={steps_per_epoch}",
        f"optim.warmup_steps={max(1, epochs * steps_per_epoch // 10)}",
        f"data.toy_num_train={num_train}", f"data.toy_num_val={num_val}",
        f"data.num_workers={workers}", f"train.checkpoint_every={min(100, steps_per_epoch)}",
    ]
    return load_config(MAIN_CONFIG, overrides + list(extra))


def probe_overrides(pre: Config, probe_epochs: int | None, features: Path, num_workers: int) -> list[str]:
    """The toy probe configs, pointed at the pre-training run's kind of toy videos.

    The probe's own counts stay (a labelled set larger than pre-training's, whose first videos are
    pre-training's); frames, size and seed follow pre-training."""
    d = pre.data
    overrides = [f"data.toy_root={d.toy_root}", f"data.toy_frames={d.toy_frames}", f"data.toy_size={d.toy_size}",
                 f"data.toy_seed={pre.run.seed}", f"data.num_workers={num_workers}",
                 f"train.feature_cache_dir={features}"]
    return overrides + ([f"train.epochs={probe_epochs}"] if probe_epochs else [])


def format_table(rows: dict[str, dict[str, dict]], title: str) -> str:
    """Markdown: one row per encoder, top-1 / top-5 per task, chance last."""
    header = "| encoder | " + " | ".join(f"{t} top-1 | {t} top-5" for t in TASKS) + " |"
    lines = [title, "", header, "|" + "---|" * (1 + 2 * len(TASKS))]
    for label, tasks in rows.items():
        cells = [f"{tasks[t]['top1']:.1f} | {tasks[t]['top5']:.1f}" for t in TASKS]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    any_row = next(iter(rows.values()))
    chance = [f"{any_row[t]['chance_top1']:.1f} | {min(100.0, 5 * any_row[t]['chance_top1']):.1f}" for t in TASKS]
    lines.append("| chance | " + " | ".join(chance) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m evals.quality", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="small",
                        help="small: a few minutes on a CPU; large: the GPU run of docs/QUALITY.md")
    parser.add_argument("--steps", type=int, help="pre-training steps (overrides the budget's)")
    parser.add_argument("--probe-epochs", type=int, help="probe training epochs (overrides the budget's)")
    parser.add_argument("--encoders", nargs="+", metavar="NAME",
                        help="which encoders to probe, in table order: encoders of the pre-training objective "
                             "(e.g. target_encoder encoder for vjepa) and 'random' (the control); default: the "
                             "encoder the objective evaluates, then random")
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda or cuda:N")
    parser.add_argument("--num-workers", type=int, help="data loader workers (default: 1 on CPU, the config's on GPU)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--checkpoint", help="probe this pre-training checkpoint instead of pre-training "
                                             "(its toy set and step count come from the checkpoint)")
    parser.add_argument("--set", dest="pretrain_set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help="override keys of the pre-training config, e.g. objective.var_weight=1.0 "
                             "(use another --out per recipe: the run folder is named by the budget only)")
    parser.add_argument("--probe-set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help="override keys of both toy probe configs, e.g. 'optim.lr=[1e-2,3e-3]'")
    parser.add_argument("--out", default="runs/quality", help="folder for the runs, features and the table")
    args = parser.parse_args(argv)
    setup_logging(0)
    if args.threads:
        torch.set_num_threads(args.threads)
    if (args.steps is not None and args.steps < 1) or (args.probe_epochs is not None and args.probe_epochs < 1):
        parser.error("--steps and --probe-epochs must be positive")
    budget = dataclasses.replace(BUDGETS[args.budget], steps=args.steps or BUDGETS[args.budget].steps,
                                 probe_epochs=args.probe_epochs or BUDGETS[args.budget].probe_epochs)
    device = str(resolve_device(args.device))
    out = Path(args.out)

    started = time.monotonic()
    if args.checkpoint:
        if args.pretrain_set:
            parser.error("--set changes the pre-training recipe; with --checkpoint there is no pre-training")
        checkpoint = Path(args.checkpoint)
        state = load_checkpoint(checkpoint)
        pre, steps = config_from_dict(state["config"], where=f"{checkpoint} (saved config)"), state["step"]
        del state
        if args.num_workers is not None:
            pre.data.num_workers = args.num_workers
    else:
        pre = pretrain_config(budget, out, device, args.num_workers, args.pretrain_set)
        steps = pre.train.epochs * pre.train.steps_per_epoch
        checkpoint = pre.run_dir / "latest.pt"
    try:  # checked before pre-training, not minutes after it
        labels = encoder_rows(pre.objective.name, args.encoders)
    except ValueError as exc:
        parser.error(str(exc))
    if not args.checkpoint:
        logger.info("pre-training %s for %d steps on %s -> %s", pre.model.name, steps, device, pre.run_dir)
        launch_local(pre, [device])  # resumes, or returns at once when the run is complete
    pretrain_s = time.monotonic() - started

    rows: dict[str, dict[str, dict]] = {}
    for key, label in labels.items():
        if key == RANDOM:
            encoder, info = load_frozen_encoder(checkpoint, random_init=True, seed=pre.run.seed)
        else:
            encoder, info = load_frozen_encoder(checkpoint, key)
        rows[label] = {}
        for task in TASKS:
            cfg = load_eval_config(REPO / "configs" / "eval" / f"toy_{task}.yaml",
                                   probe_overrides(pre, budget.probe_epochs, out / "features", pre.data.num_workers)
                                   + args.probe_set)
            # A folder per probe setting, so that another --probe-epochs or --probe-set starts afresh.
            setting = hashlib.sha1(json.dumps(cfg.to_dict(), sort_keys=True).encode()).hexdigest()[:8]
            result = run_probe(cfg, encoder, info, checkpoint.parent / f"probe_{task}_{key}_{setting}", device)
            probe_epochs, probe_data = cfg.train.epochs, cfg.data
            rows[label][task] = {"top1": result.top1, "top5": result.top5,
                                 "chance_top1": result.results["chance_top1"], "results": str(result.results_path)}
    total_s = time.monotonic() - started

    budget_name = "given checkpoint" if args.checkpoint else f"{args.budget} budget"
    title = (f"Toy tasks, attentive probe on frozen {pre.model.name} ({budget_name}: {steps} pre-training "
             f"steps of {pre.data.batch_size} clips on {pre.data.toy_num_train} videos; probe {probe_epochs} epochs "
             f"on {probe_data.toy_num_train} train / {probe_data.toy_num_val} val videos; {device}; "
             f"{pretrain_s / 60:.1f} min pre-training, {total_s / 60:.1f} min in all)")
    table = format_table(rows, title)
    print(table)
    summary = {"budget": budget_name, "steps": steps, "device": device, "probe_epochs": probe_epochs,
               "toy_num_train": pre.data.toy_num_train, "probe_num_train": probe_data.toy_num_train,
               "probe_num_val": probe_data.toy_num_val,
               "pretrain_minutes": pretrain_s / 60, "total_minutes": total_s / 60,
               "checkpoint": str(checkpoint), "rows": rows}
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"quality_{'checkpoint' if args.checkpoint else args.budget}_{steps}steps"
    if args.probe_set:  # another probe setting of the same pre-training: a table of its own
        stem = stem.with_name(f"{stem.name}_probe-{hashlib.sha1(' '.join(args.probe_set).encode()).hexdigest()[:6]}")
    stem.with_suffix(".md").write_text(table + "\n")
    stem.with_suffix(".json").write_text(json.dumps(summary, indent=1))
    print(stem.with_suffix(".md"))
    return summary


if __name__ == "__main__":
    main()
