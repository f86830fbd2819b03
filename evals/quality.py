"""The quality benchmark: does pre-training beat random initialisation, and by how much of the way
to a supervised model?

    python -m evals.quality --budget cpu                      # 2 CPU cores; about an hour
    python -m evals.quality --budget gpu --device cuda --parallel 14   # one GPU, runs side by side
    python -m evals.quality --budget gpu --device cuda --variant patch8 model.patch_size=8

Tasks (vjm.data.bench_tasks, generated once, real handwriting over real photos): ``digit``
(appearance, 10 classes), ``speed`` and ``orbit`` (motion, 3 and 2 classes). Rows:

* chance;
* ``random``: the pre-training config's encoder, randomly initialised (one per probe seed);
* ``vjepa``: configs/vjepa_tiny.yaml (the main job's recipe) pre-trained on the unlabelled
  training clips of all three tasks, at each budget of the learning curve, over pre-training seeds;
* ``vjepa_vit``: the same recipe with ViT-Ti, at the largest budget;
* ``mae``: configs/mae_tiny.yaml's objective, masks and optimiser on the same encoder, data and
  length (VideoMAE's recipe, at the largest budget);
* ``arm``: configs/arm_tiny.yaml's objective, optimiser and encoder (MambaMLP-Ti: ARM needs one
  causal scan, which the main job's bidirectional encoder is not) on the same data and length,
  at the largest budget, against the random-init control of its own architecture;
* ``vjepa_slws``: the main recipe with the SLWS regulariser added (rate 0.1), at the largest budget;
* ``mfd``: configs/mfd_tiny.yaml's objective (masked feature distillation) on the main job's
  encoder, data and length, its teacher the ``mae`` run of the same seed (planned, and trained
  first, whenever ``mfd`` is asked for), at the largest budget;
* ``vjepa_finetuned``: each ``vjepa`` run of the largest budget fine-tuned on each task with the
  supervised row's recipe (``python -m evals.finetune --checkpoint``), read by its own classifier's
  top-1 on the validation clips: with ``--bound finetune``, fine-tuned against from scratch;
* ``supervised``: the same encoder trained with each task's labels (vjm's ``supervised``
  objective through the same engine): the upper bound of that task. Both labelled rows are a probe
  first, then fine-tuning (LP-FT): the classifier starts from the best head of a probe of the
  encoder it starts from (for the bound of each seed, the random control's probe of the same
  random weights, which is why ``supervised`` needs ``random``; for ``vjepa_finetuned``, its run's
  first probe), and waits for it. With ``--bound probe`` (the
  default) its encoder is probed like every other; with ``--bound finetune`` the run is
  ``python -m evals.finetune --random-init`` and the reading is its own classifier's top-1 on the
  validation clips (the fine-tuning protocol's baseline; one reading per task and pre-training
  seed, no probe);
* ``--variant NAME KEY=VALUE...``: the V-JEPA recipe with overrides, a row of its own.

Every encoder is frozen and probed with vjm's attentive probe (configs/eval/bench.yaml) once per
probe seed: the best head of its lr x weight-decay grid, picked on a fifth of the training clips
held out of the heads' training, read on the validation clips (each head at its best epoch on the
held-out clips: early stopping). A random-init control draws its
weights from the probe seed, and has as many seeds as a pre-trained row has readings. A reading is
the mean and standard deviation over pre-training seeds x probe seeds (controls: probe seeds). Per
task the table gives the share of the gap closed, (row - random) / (supervised - random), where
supervised beats random by more than twice their combined spread (else "no gap"). Two more
tables: the same probes with the best head picked on the validation clips themselves (V-JEPA's
practice), and every head of the grid by its learning rate, none picked.

Everything is a subprocess of the entry points users run (launch.local, evals.attentive_probe),
in one pool of ``--parallel`` slots: the controls' probes start at once, each encoder's probes as
soon as its pre-training ends; each job logs under the output folder, and a rerun skips finished
work (``--report-only``: run nothing, tabulate what finished). The table is printed and written
as quality.md and quality.json in the output folder.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script
    sys.path.insert(0, str(REPO))

from vjm.config import load_config, save_config  # noqa: E402
from vjm.console import setup_logging  # noqa: E402
from vjm.cpu import default_threads, usable_cores  # noqa: E402
from vjm.data.bench_tasks import NUM_CLASSES, TASK_KINDS, TASKS, ensure_bench_tasks  # noqa: E402

logger = logging.getLogger("evals.quality")

MAIN_CONFIG = REPO / "configs" / "vjepa_tiny.yaml"
MAE_CONFIG = REPO / "configs" / "mae_tiny.yaml"
ARM_CONFIG = REPO / "configs" / "arm_tiny.yaml"
MFD_CONFIG = REPO / "configs" / "mfd_tiny.yaml"
SLWS = {"kind": "slws", "rate": 0.1}  # seed 004's rate at base size, as configs/mfd_tiny.yaml
PROBE_CONFIG = REPO / "configs" / "eval" / "bench.yaml"
RANDOM_NAME = "random"  # the main recipe's random-init control


@dataclass(frozen=True)
class Budget:
    steps: tuple[int, ...]  # pre-training optimiser steps; several = a learning curve
    batch_size: int
    num_train: int  # clips per task (pre-training pools the three tasks' training clips)
    num_val: int
    pretrain_seeds: int
    probe_seeds: int
    probe_epochs: int
    rows: tuple[str, ...]


BUDGETS = {
    # The main job's length on 2 CPU cores: each pre-training run takes minutes.
    "cpu": Budget(steps=(128,), batch_size=8, num_train=1024, num_val=512, pretrain_seeds=2, probe_seeds=3,
                  probe_epochs=20, rows=("random", "vjepa", "supervised")),
    # One GPU, at most 10 minutes of pre-training a run: small clips run host-bound at about 1 step/s
    # each with 5-7 runs side by side on an H200 (docs/QUALITY.md), so the curve ends at 512 steps.
    "gpu": Budget(steps=(128, 256, 512), batch_size=32, num_train=2048, num_val=1024, pretrain_seeds=2,
                  probe_seeds=3, probe_epochs=20,
                  rows=("random", "vjepa", "vjepa_vit", "vjepa_slws", "mae", "arm", "mfd", "vjepa_finetuned",
                        "supervised")),
}
ROWS = ("random", "vjepa", "vjepa_vit", "vjepa_slws", "mae", "arm", "mfd", "vjepa_finetuned", "supervised")


@dataclass
class Encoder:
    """One encoder to probe: a pre-training run (or a random-init control) and what it is for."""

    row: str  # table row
    tasks: tuple[str, ...]  # the tasks it is probed on
    seed: int
    steps: int | None = None  # the optimiser steps its pre-training takes
    config: Path | None = None  # its pre-training config (written by this benchmark)
    run_dir: Path | None = None
    pretrain_s: float | None = None  # wall-clock seconds of its pre-training
    arch: str = ""  # its model section, as text: rows compare with the control and bound of their own
    after: str | None = None  # the run it starts from (MFD's teacher, a fine-tuned encoder): trained first
    finetuned: bool = False  # trained and read by evals.finetune (its own classifier), not probed
    head_probe: Path | None = None  # the probe whose best head starts its classifier (LP-FT): it runs first
    readings: dict[str, list[Reading]] = field(default_factory=dict)  # task -> one per probe seed


@dataclass
class Reading:
    """What one probe of an encoder (or one fine-tuned run) reads on a task, top-1 % on the validation clips."""

    top1: float  # the best head, picked as the probe's config says (or the fine-tuned classifier)
    picked_on_val: float | None = None  # the best head picked on the validation clips (V-JEPA's practice)
    head_rates: dict[float, list[float]] = field(default_factory=dict)  # lr -> each head's top-1, none picked
    fit: dict[str, float] = field(default_factory=dict)  # the picked head on its training / held-out / val clips
    picked: str = ""  # how the probe picked its best head (and each head's epoch), in words

    @classmethod
    def of_probe(cls, results: dict) -> Reading:
        """From a probe's results.json (one without held-out clips picked its best head on the val clips)."""
        rates: dict[float, list[float]] = {}
        for head in results.get("heads", []):
            rates.setdefault(head["lr"], []).append(head["top1"])
        best = results["heads"][results["best_head"]] if "best_head" in results else {}
        fit = {"train": best["train_top1"], "held out": best["holdout_top1"], "val": best["top1"]} if (
            "holdout_top1" in best) else {}
        picked = "on the " + results.get("picked_on", "validation clips") + (
            ", each head at its best epoch there" if results.get("early_stopping") else ", at the last epoch")
        return cls(results["top1"], results.get("top1_picked_on_val", results["top1"]), rates, fit, picked)


# ----------------------------------------------------------------------------- configs


def loader_workers(args) -> int:
    """Data workers of each run: the cores shared by the runs side by side."""
    return max(1, min(6, usable_cores() // max(1, args.parallel) - 1))


def pretraining_overrides(budget: Budget, lists: dict, tasks: tuple[str, ...], steps: int, seed: int,
                          run_dir: Path, device: str, workers: int) -> list[str]:
    """configs/vjepa_tiny.yaml on the training clips of ``tasks``, for ``steps`` optimiser steps."""
    per_epoch = max(1, len(tasks) * budget.num_train // budget.batch_size)
    epochs = -(-steps // per_epoch)
    train = "[" + ",".join(str(lists["train"][task]) for task in tasks) + "]"
    return [
        f"run.folder={run_dir}", f"run.seed={seed}", "data.dataset=video", f"data.train={train}",
        f"data.batch_size={budget.batch_size}", f"train.epochs={epochs}",
        f"train.steps_per_epoch={-(-steps // epochs)}", f"optim.warmup_steps={max(1, steps // 10)}",
        f"train.checkpoint_every={max(1, steps // 4)}", f"train.log_every={max(1, min(50, steps // 16))}",
        f"data.num_workers={workers}", "data.pin_memory=" + str(device != "cpu").lower(),
    ]


def supervised_overrides(task: str, lists: dict, head_probe: Path, bound: str = "probe") -> list[str]:
    """The bound's recipe: the pre-training run with labels, and no augmentation that changes a label.

    No flips (a mirrored digit is another shape, a mirrored orbit turns the other way) and no
    random resized crops (a crop of 0.3 of the area cuts a digit off and zooms a clip's motion by
    up to 1.8x, which moves a slow clip into the medium range); the fine-tuning optimiser (constant
    weight decay 0.05, clip 5) rather than V-JEPA's rising weight decay; the encoder at lr 1e-4 and
    the head at 30 times that. A probe first, then fine-tuning (LP-FT): the classifier starts from
    the best head of ``head_probe``, a probe of the encoder the run starts from. With a new head,
    the training loss stayed at chance on the GPU from scratch, at one rate or these split rates,
    with or without the encoder frozen for half the run: on a random encoder's features the probe's
    own heads leave chance only at lr 1e-2 and after about 5 passes (docs/QUALITY.md)."""
    overrides = ["objective={name: supervised, num_classes: %d, label_smoothing: 0.1}" % NUM_CLASSES[task],
                 f"objective.init.head={head_probe}", "masks=null", "regularizers=[]", "data.hflip=false",
                 "data.random_resize_scale=[1.0,1.0]", "data.random_resize_aspect=[1.0,1.0]", "optim.lr=1.0e-4",
                 "optim.head_lr_scale=30.0", "optim.start_lr=1.0e-6", "optim.weight_decay=0.05",
                 "optim.final_weight_decay=0.05", "optim.clip_grad=5.0"]
    if bound == "finetune":  # evals.finetune evaluates the classifier on the task's validation clips
        overrides.append(f"data.val=[{lists['val'][task]}]")
    return overrides


def objective_overrides(config: Path) -> list[str]:
    """Overrides that give the main job another config's objective: its objective, masks,
    regularisers and optimiser. Data, model and length stay the benchmark's, so the row shares the
    main recipe's random-init control and supervised bound."""
    raw = load_config(config).to_dict()
    optim = [f"optim.{key}={json.dumps(value)}" for key, value in raw["optim"].items() if key != "warmup_steps"]
    return [f"objective={json.dumps(raw['objective'])}", f"masks={json.dumps(raw['masks'])}",
            f"regularizers={json.dumps(raw['regularizers'])}", *optim]


def model_overrides(config: Path) -> list[str]:
    """Overrides that give the main job another config's encoder (for an objective that needs its own)."""
    return [f"model={json.dumps(load_config(config).to_dict()['model'])}"]


def plan(args, budget: Budget, lists: dict, out: Path) -> list[Encoder]:
    """The encoders of the table, their pre-training configs written under ``out/configs``."""
    encoders: list[Encoder] = []
    largest = max(budget.steps)

    def pretrained(row: str, tasks: tuple[str, ...], steps: int, seed: int, extra: list[str]) -> Encoder:
        name = f"{row}_{steps}steps_seed{seed}"
        run_dir = out / "runs" / name
        overrides = (pretraining_overrides(budget, lists, tasks, steps, seed, run_dir, args.device,
                                           loader_workers(args)) + args.overrides + extra)
        cfg = load_config(MAIN_CONFIG, overrides, check_data=False)  # its lists are read when the run loads it
        path = save_config(cfg, out / "configs" / f"{name}.yaml")
        # The steps it takes (whole epochs; a variant may change them), which its row is labelled with.
        return Encoder(row, tasks, seed, cfg.train.epochs * cfg.train.steps_per_epoch, path, run_dir)

    for seed in range(budget.pretrain_seeds):
        if "vjepa" in budget.rows or "vjepa_finetuned" in budget.rows:
            vjepa = [pretrained("vjepa", TASKS, steps, seed, []) for steps in budget.steps]
            encoders += vjepa
        if "vjepa_finetuned" in budget.rows:  # the largest budget's encoder, fine-tuned on each task
            for task in TASKS:
                probe = probe_folder(out, vjepa[-1].run_dir.name, task, 0, args.protocol)
                tuned = pretrained(f"vjepa_finetuned_{task}", (task,), largest, seed,
                                   supervised_overrides(task, lists, probe, "finetune"))
                tuned.row, tuned.after, tuned.finetuned = "vjepa_finetuned", vjepa[-1].run_dir.name, True
                tuned.head_probe = probe
                encoders.append(tuned)
        if "vjepa_vit" in budget.rows:
            encoders.append(pretrained("vjepa_vit", TASKS, largest, seed, ["model.name=vit_tiny"]))
        if "vjepa_slws" in budget.rows:
            regularizers = load_config(MAIN_CONFIG).to_dict()["regularizers"] + [SLWS]
            encoders.append(pretrained("vjepa_slws", TASKS, largest, seed,
                                       [f"regularizers={json.dumps(regularizers)}"]))
        if "mae" in budget.rows or "mfd" in budget.rows:  # MAE's encoder is MFD's teacher
            mae = pretrained("mae", TASKS, largest, seed, objective_overrides(MAE_CONFIG))
            encoders.append(mae)
        if "mfd" in budget.rows:
            student = pretrained("mfd", TASKS, largest, seed, objective_overrides(MFD_CONFIG) + [
                f"objective.teacher.checkpoint={mae.run_dir / 'latest.pt'}"])
            student.after = mae.run_dir.name
            encoders.append(student)
        if "arm" in budget.rows:
            encoders.append(pretrained("arm", TASKS, largest, seed,
                                       objective_overrides(ARM_CONFIG) + model_overrides(ARM_CONFIG)))
        for name, overrides in args.variant:
            encoders.append(pretrained(f"vjepa_{name}", TASKS, largest, seed, overrides))
        if "supervised" in budget.rows:  # the bound: one run per task and seed, so its spread is measured
            for task in TASKS:
                # The control's probe of this seed read the random weights this run starts from (the same seed).
                probe = probe_folder(out, RANDOM_NAME, task, seed, args.protocol)
                bound = pretrained(f"supervised_{task}", (task,), largest, seed,
                                   supervised_overrides(task, lists, probe, args.bound))
                bound.finetuned, bound.head_probe = args.bound == "finetune", probe
                encoders.append(bound)
    if "random" in budget.rows:  # the control needs no training: its probe seeds draw its weights
        encoders += random_controls(encoders, args, out)
    for enc in encoders:
        enc.arch = repr(load_config(enc.config, check_data=False).model)
    return encoders


def random_controls(encoders: list[Encoder], args, out: Path) -> list[Encoder]:
    """One random-init control per encoder architecture of the table (the main recipe's is 'random')."""
    main = load_config(MAIN_CONFIG, args.overrides)
    main_config = save_config(main, out / "configs" / "random.yaml")
    controls = {repr(main.model): Encoder(RANDOM_NAME, TASKS, 0, config=main_config)}
    for enc in encoders:
        model = load_config(enc.config, check_data=False).model
        if repr(model) not in controls:
            name = f"random ({enc.row})"
            controls[repr(model)] = Encoder(name, TASKS, 0, config=enc.config)
    return list(controls.values())


# ----------------------------------------------------------------------------- jobs


@dataclass
class Job:
    """One subprocess: a pre-training run or a probe."""

    name: str
    command: list[str]
    log: Path
    after: str | None = None  # the job that must finish first (a probe waits for its pre-training)
    on_done: Callable[[float], None] | None = None  # called with its wall-clock seconds
    folder: Path | None = None  # a probe's output folder (a classifier may start from its best head)


def run_jobs(jobs: list[Job], parallel: int, threads: int | None) -> None:
    """Run the jobs, ``parallel`` at a time, each as soon as the job it waits for has finished, so
    the controls' probes fill the slots the pre-training runs leave free.

    A failed job stops the benchmark with the end of its log."""
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    pending, running, finished = list(jobs), {}, set()
    total, started = len(jobs), time.monotonic()
    while pending or running:
        ready = [job for job in pending if job.after is None or job.after in finished]
        while ready and len(running) < parallel:
            job = ready.pop(0)
            pending.remove(job)
            job.log.parent.mkdir(parents=True, exist_ok=True)
            handle = job.log.open("w")
            process = subprocess.Popen(job.command, cwd=REPO, env=env, stdout=handle, stderr=subprocess.STDOUT)
            running[job.name] = (job, process, handle, time.monotonic())
            logger.info("started %s (log %s)", job.name, job.log)
        if not running:  # everything left waits for a job that is not in this list
            missing = sorted({job.after for job in pending} - finished)
            raise RuntimeError(f"jobs wait for jobs that never run: {missing}")
        time.sleep(0.5)
        for name, (job, process, handle, t0) in list(running.items()):
            if process.poll() is None:
                continue
            handle.close()
            del running[name]
            if process.returncode != 0:
                for _, other, _, _ in running.values():
                    other.terminate()
                tail = "".join(job.log.read_text().splitlines(keepends=True)[-25:])
                raise RuntimeError(f"{name} failed (exit {process.returncode}); the end of {job.log}:\n{tail}")
            seconds = time.monotonic() - t0
            finished.add(name)
            if job.on_done:
                job.on_done(seconds)
            done = total - len(pending) - len(running)
            logger.info("finished %s in %.0f s [%d/%d, %.0f s elapsed]", name, seconds, done, total,
                        time.monotonic() - started)


def pretraining_jobs(encoders: list[Encoder], args) -> list[Job]:
    """A job per encoder still to pre-train; the others get their recorded pre-training time."""
    jobs = []
    for enc in encoders:
        if enc.run_dir is None:
            continue
        marker = enc.run_dir / "pretrain_done.json"
        if marker.is_file():
            enc.pretrain_s = json.loads(marker.read_text())["seconds"]
            continue
        if args.report_only:
            logger.warning("not pre-trained yet: %s (left out of the table)", enc.run_dir.name)
            continue

        def done(seconds: float, enc: Encoder = enc, marker: Path = marker) -> None:
            enc.pretrain_s = seconds
            marker.write_text(json.dumps({"seconds": seconds}))

        device = "cpu" if args.device == "cpu" else "cuda:0"
        command = [sys.executable, "-m", "launch.local", "--fname", str(enc.config), "--devices", device]
        if enc.finetuned:  # trains, then evaluates its own classifier
            start = (["--checkpoint", str(enc.run_dir.parent / enc.after / "latest.pt")] if enc.after
                     else ["--random-init"])
            command = [sys.executable, "-m", "evals.finetune", "--fname", str(enc.config), *start,
                       "--devices", device, "--output-dir", str(enc.run_dir)]
        # A run waits for the one it starts from (planned before it), unless that finished in an earlier run.
        after = enc.after if enc.after in {job.name for job in jobs} else None
        jobs.append(Job(enc.run_dir.name, command, enc.run_dir.parent / f"{enc.run_dir.name}.log", after=after,
                        on_done=done))
    return jobs


def protocol_tag(probe_overrides: list[str]) -> str:
    """A suffix naming the probes' overrides (--probe-set), '' without: the probes of one protocol, and the
    table read from them, go to names of their own, so one output folder holds several protocols."""
    return "".join("_" + re.sub(r"[^A-Za-z0-9._=-]", "-", override) for override in probe_overrides)


def probe_folder(out: Path, name: str, task: str, probe_seed: int, tag: str = "") -> Path:
    """Where the probe of encoder ``name`` (its run folder's name, or a control's row) on ``task`` writes."""
    return (out / "probes" / name.replace(" ", "_").replace("(", "").replace(")", "")
            / f"{task}_probe{probe_seed}{tag}")


def probe_command(enc: Encoder, task: str, probe_seed: int, budget: Budget, lists: dict, out: Path,
                  args) -> tuple[list[str], Path]:
    folder = probe_folder(out, enc.run_dir.name if enc.run_dir else enc.row, task, probe_seed, args.protocol)
    overrides = [f"data.train=[{lists['train'][task]}]", f"data.val=[{lists['val'][task]}]",
                 f"data.num_classes={NUM_CLASSES[task]}", f"run.seed={probe_seed}",
                 f"train.epochs={budget.probe_epochs}", f"train.feature_cache_dir={out / 'features'}",
                 f"data.num_workers={loader_workers(args)}", *args.probe_overrides]
    command = [sys.executable, "-m", "evals.attentive_probe", "--fname", str(PROBE_CONFIG), "--set", *overrides,
               "--device", args.device, "--output-dir", str(folder)]
    if enc.run_dir is None:
        command += ["--random-init", "--pretrain-config", str(enc.config)]
    else:
        command += ["--checkpoint", str(enc.run_dir / "latest.pt")]
    return command, folder


def probe_jobs(encoders: list[Encoder], budget: Budget, lists: dict, out: Path, args,
               pretraining: list[Job]) -> tuple[list[Job], dict[Path, tuple[Encoder, str]]]:
    """The probes still to run (each after its encoder's pre-training), and where each reading lands."""
    jobs, where = [], {}
    to_pretrain = {job.name for job in pretraining}
    # Controls first (they wait for nothing), then seed-major: an encoder's first probe caches its
    # features before its other seeds start.
    order = sorted(encoders, key=lambda enc: enc.run_dir is not None)
    # A control draws a new random encoder for each probe seed, as many as each pre-trained row has
    # readings: with fewer, the random encoders' own spread dominates every comparison.
    control_seeds = budget.probe_seeds * budget.pretrain_seeds
    for seed in range(control_seeds):
        for enc in order:
            if enc.finetuned or seed >= (control_seeds if enc.run_dir is None else budget.probe_seeds):
                continue
            trained = enc.run_dir is None or enc.pretrain_s is not None or enc.run_dir.name in to_pretrain
            if not trained:  # --report-only: not pre-trained
                continue
            for task in enc.tasks:
                command, folder = probe_command(enc, task, seed, budget, lists, out, args)
                where[folder] = (enc, task)
                if not (folder / "results.json").is_file():
                    after = enc.run_dir.name if enc.run_dir and enc.run_dir.name in to_pretrain else None
                    jobs.append(Job(f"probe {folder.parent.name} {folder.name}", command, folder / "probe.log",
                                    after=after, folder=folder))
    return jobs, where


def run_benchmark(encoders: list[Encoder], budget: Budget, lists: dict, out: Path, args) -> None:
    """Pre-train and probe what is not done yet, then read every finished probe into its encoder."""
    pretraining = pretraining_jobs(encoders, args)
    probes, where = probe_jobs(encoders, budget, lists, out, args, pretraining)
    # A classifier that starts from a probe's head waits for that probe (which waits for its encoder).
    probe_job = {job.folder: job.name for job in probes}
    encoder_of = {enc.run_dir.name: enc for enc in encoders if enc.run_dir is not None}
    for job in pretraining:
        if encoder_of[job.name].head_probe in probe_job:
            job.after = probe_job[encoder_of[job.name].head_probe]
    if args.report_only:
        if probes:
            logger.warning("%d probe(s) not finished (left out of the table)", len(probes))
    elif pretraining or probes:
        logger.info("%d pre-training run(s) and %d probe(s), %d at a time", len(pretraining), len(probes),
                    args.parallel)
        run_jobs(pretraining + probes, args.parallel, args.threads)
    for folder, (enc, task) in sorted(where.items()):
        if (folder / "results.json").is_file():
            reading = Reading.of_probe(json.loads((folder / "results.json").read_text()))
            enc.readings.setdefault(task, []).append(reading)
    for enc in encoders:  # a fine-tuned run's reading is its own classifier's
        results = enc.run_dir / "results.json" if enc.run_dir is not None else None
        if enc.finetuned and results.is_file():
            enc.readings[enc.tasks[0]] = [Reading(json.loads(results.read_text())["top1"])]


# ----------------------------------------------------------------------------- the table


def label_of(enc: Encoder) -> str:
    if enc.row.startswith("supervised_"):  # one row: each task's bound is its own run
        return f"supervised ({enc.steps} steps)"
    return enc.row if enc.steps is None else f"{enc.row} ({enc.steps} steps)"


def summarise(encoders: list[Encoder]) -> dict[str, dict]:
    """{row label: {task: {mean, std, n, values}, and the same for the best head picked on the val
    clips ("picked_on_val"), each head rate ("head_rates") and the picked heads' fit ("fit")}}:
    readings pooled over pre-training and probe seeds."""
    rows: dict[str, dict] = {}
    for enc in encoders:
        row = rows.setdefault(label_of(enc), {"minutes": [], "seeds": set(), "readings": {}})
        if enc.pretrain_s is not None:
            row["minutes"].append(enc.pretrain_s / 60)
        row["seeds"].add(enc.seed)
        for task, readings in enc.readings.items():
            row["readings"].setdefault(task, []).extend(readings)
    table = {}
    for label, row in rows.items():
        entry = {"pretrain_seeds": len(row["seeds"]),
                 "pretrain_minutes": statistics.mean(row["minutes"]) if row["minutes"] else None}
        by_task = {task: row["readings"][task] for task in TASKS if row["readings"].get(task)}
        entry["picked"] = sorted({r.picked for readings in by_task.values() for r in readings if r.picked})
        for task, readings in by_task.items():
            entry[task] = spread([r.top1 for r in readings])
        on_val = {task: [r.picked_on_val for r in readings if r.picked_on_val is not None]
                  for task, readings in by_task.items()}
        if any(on_val.values()):
            entry["picked_on_val"] = {task: spread(values) for task, values in on_val.items() if values}
        rates = {task: pooled(r.head_rates for r in readings) for task, readings in by_task.items()}
        if any(rates.values()):
            entry["head_rates"] = {task: {lr: spread(values) for lr, values in sorted(by_lr.items(), reverse=True)}
                                   for task, by_lr in rates.items() if by_lr}
        fits = {task: pooled({split: [value] for split, value in r.fit.items()} for r in readings)
                for task, readings in by_task.items()}
        if any(fits.values()):
            entry["fit"] = {task: {split: spread(values) for split, values in fit.items()}
                            for task, fit in fits.items() if fit}
        table[label] = entry
    # Gap closed: against the random control and the supervised bound of the row's own architecture.
    arch_of = {label_of(enc): enc.arch for enc in encoders}
    controls = {arch_of[label]: row for label, row in table.items() if label.startswith("random")}
    bounds = {arch_of[label]: row for label, row in table.items() if label.startswith("supervised")}
    for label, row in table.items():
        control, bound = controls.get(arch_of[label], {}), bounds.get(arch_of[label], {})
        for task in TASKS:
            if task in row and task in control and task in bound:
                row[task]["gap_closed"] = gap_closed(row[task], control[task], bound[task])
    return table


def pooled(groups: Iterable[dict]) -> dict[Any, list[float]]:
    """Lists of values under the same key, concatenated."""
    out: dict[Any, list[float]] = {}
    for group in groups:
        for key, values in group.items():
            out.setdefault(key, []).extend(values)
    return out


def spread(values: list[float]) -> dict:
    return {"mean": statistics.mean(values), "n": len(values), "values": values,
            "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def gap_closed(reading: dict, control: dict, bound: dict) -> float | None:
    """(reading - control) / (bound - control); None when the bound does not beat the control by
    more than twice their combined spread: a share of a gap inside the noise means nothing."""
    gap = bound["mean"] - control["mean"]
    if gap <= 2 * math.hypot(bound["std"], control["std"]):
        return None
    return (reading["mean"] - control["mean"]) / gap


def markdown(table: dict[str, dict], header: str) -> str:
    tasks = " | ".join(f"{task} ({TASK_KINDS[task]}, {NUM_CLASSES[task]} classes)" for task in TASKS)
    lines = [header, "", f"| encoder | pre-training min | {tasks} |", "|---|---|" + "---|" * len(TASKS),
             "| chance | - | " + " | ".join(f"{100 / NUM_CLASSES[task]:.1f}" for task in TASKS) + " |"]
    for label, row in table.items():
        cells = []
        for task in TASKS:
            if task not in row:
                cells.append("-")
                continue
            r = row[task]
            gap, compared = r.get("gap_closed"), "gap_closed" in r and not label.startswith(("random", "supervised"))
            gap_text = "" if not compared else ", no gap" if gap is None else f", {100 * gap:.0f}% of gap"
            cells.append(f"{r['mean']:.1f} ± {r['std']:.1f} (n={r['n']}{gap_text})")
        minutes = f"{row['pretrain_minutes']:.1f}" if row["pretrain_minutes"] is not None else "-"
        lines.append(f"| {label} | {minutes} | " + " | ".join(cells) + " |")
    picked = sorted({how for row in table.values() for how in row.get("picked", [])})
    lines += ["", "Top-1 % on the validation clips (new handwriting, new backgrounds) of each probe's best head "
              f"(picked {'; or '.join(picked) or 'as its config says'}): mean ± standard "
              "deviation over pre-training seeds x probe seeds (n readings); % of gap = (row - random) / "
              "(supervised - random), given only where supervised beats random by more than twice their combined "
              "spread (else: no gap)."]
    return "\n".join(lines + picked_on_val_lines(table) + head_rate_lines(table) + fit_lines(table)) + "\n"


def picked_on_val_lines(table: dict[str, dict]) -> list[str]:
    """The same probes with the best head picked on the validation clips themselves (V-JEPA's
    practice), where the table above picked it on held-out training clips: the difference is what
    picking on the clips it is read on adds, and it adds most where the heads disagree."""
    if all(row.get("picked_on_val", {}).get(task, {}).get("values") == row[task]["values"]
           for row in table.values() for task in TASKS if task in row):
        return []
    lines = ["", "The same probes, the best head picked on the validation clips (V-JEPA's practice):", "",
             "| encoder | " + " | ".join(TASKS) + " |", "|---|" + "---|" * len(TASKS)]
    for label, row in table.items():
        picked = row.get("picked_on_val", {})
        cells = [f"{r['mean']:.1f} ± {r['std']:.1f} (n={r['n']})" if (r := picked.get(task)) else "-"
                 for task in TASKS]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def head_rate_lines(table: dict[str, dict]) -> list[str]:
    """The probes' heads at each learning rate of their grid, none picked: how easily a head reads each
    encoder. Picking the best head on the validation clips (V-JEPA's practice) favours the encoders
    whose heads disagree most, and a random encoder's do."""
    rated = {label: row["head_rates"] for label, row in table.items() if row.get("head_rates")}
    if not rated:
        return []
    columns = [(task, lr) for task in TASKS for lr in sorted({lr for rates in rated.values()
                                                              for lr in rates.get(task, {})}, reverse=True)]
    lines = ["", "Each head of the probes' grid, by its learning rate (mean ± standard deviation over the "
             "weight decays of the grid, pre-training seeds and probe seeds; no head picked):", "",
             "| encoder | " + " | ".join(f"{task} lr {lr:g}" for task, lr in columns) + " |",
             "|---|" + "---|" * len(columns)]
    for label, rates in rated.items():
        cells = [f"{r['mean']:.1f} ± {r['std']:.1f}" if (r := rates.get(task, {}).get(lr)) else "-"
                 for task, lr in columns]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def fit_lines(table: dict[str, dict]) -> list[str]:
    """The picked heads' top-1 on the clips they trained on, on the held-out clips they were picked on,
    and on the validation clips: a head far better on its training clips than on the held-out ones
    has memorised them, which the richer features of a longer pre-training make easier."""
    fitted = {label: row["fit"] for label, row in table.items() if row.get("fit")}
    if not fitted:
        return []
    splits = ("train", "held out", "val")
    lines = ["", "The picked heads on their training clips / the held-out clips they were picked on / the "
             "validation clips (mean top-1 %):", "",
             "| encoder | " + " | ".join(f"{task}: {' / '.join(splits)}" for task in TASKS) + " |",
             "|---|" + "---|" * len(TASKS)]
    for label, fit in fitted.items():
        cells = [" / ".join(f"{fit[task][split]['mean']:.1f}" for split in splits) if task in fit else "-"
                 for task in TASKS]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


# ----------------------------------------------------------------------------- main


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m evals.quality", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="cpu", help="sizes, seeds and rows")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (every run on cuda:0)")
    parser.add_argument("--out", type=Path, help="output folder (default: runs/quality_<budget>)")
    parser.add_argument("--rows", nargs="+", choices=ROWS, help="rows to run (default: the budget's)")
    parser.add_argument("--bound", choices=("probe", "finetune"), default="probe",
                        help="how the supervised row is read: its encoder probed like the others (probe), or "
                             "the top-1 of its own classifier from python -m evals.finetune --random-init "
                             "(finetune)")
    parser.add_argument("--steps", nargs="+", type=int, help="pre-training steps: the learning curve")
    parser.add_argument("--pretrain-seeds", type=int, help="pre-training seeds of each row")
    parser.add_argument("--probe-seeds", type=int, help="probe seeds of each encoder")
    parser.add_argument("--num-train", type=int, help="training clips per task (default: the budget's)")
    parser.add_argument("--num-val", type=int, help="validation clips per task (default: the budget's)")
    parser.add_argument("--probe-epochs", type=int, help="epochs of each probe (default: the budget's)")
    parser.add_argument("--parallel", type=int, default=1, help="runs side by side (GPU: 4-8)")
    parser.add_argument("--threads", type=int, help="intra-op threads of each run (default: its share of the cores "
                                                    "this process may use, less its loader workers)")
    parser.add_argument("--report-only", action="store_true",
                        help="train and probe nothing: the table of what has finished (e.g. copied from elsewhere)")
    parser.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help="overrides of configs/vjepa_tiny.yaml for every pre-training run (the recipe)")
    parser.add_argument("--variant", nargs="+", action="append", default=[], metavar=("NAME", "KEY=VALUE"),
                        help="an extra V-JEPA row: a name and its overrides (repeatable)")
    parser.add_argument("--probe-set", dest="probe_overrides", nargs="+", action="extend", default=[],
                        metavar="KEY=VALUE", help="overrides of configs/eval/bench.yaml for every probe (e.g. "
                        "data.label_fraction=0.1, a low-shot probe); their probes and table get names of their "
                        "own, so the same output folder reuses its pre-training runs")
    args = parser.parse_args(argv)
    if args.rows and "supervised" in args.rows and "random" not in args.rows:
        parser.error("--rows supervised needs random too: the bound's classifier starts from the best head of "
                     "the random-init control's first probe, which reads the weights the bound starts from")
    for variant in args.variant:
        if len(variant) < 2:
            parser.error(f"--variant {variant[0]}: give a name and at least one KEY=VALUE override")
    args.variant = [(v[0], v[1:]) for v in args.variant]
    args.protocol = protocol_tag(args.probe_overrides)  # names the probes and table of these overrides
    # Runs side by side must not each take every core: oversubscribed threads slow them all.
    args.threads = args.threads or default_threads(loader_workers(args), args.parallel)
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    setup_logging(0)
    base = BUDGETS[args.budget]
    budget = Budget(steps=tuple(args.steps or base.steps), batch_size=base.batch_size,
                    num_train=args.num_train or base.num_train, num_val=args.num_val or base.num_val,
                    pretrain_seeds=args.pretrain_seeds or base.pretrain_seeds,
                    probe_seeds=args.probe_seeds or base.probe_seeds,
                    probe_epochs=args.probe_epochs or base.probe_epochs, rows=tuple(args.rows or base.rows))
    out = (args.out or REPO / "runs" / f"quality_{args.budget}").resolve()
    started = time.monotonic()
    frames = load_config(MAIN_CONFIG).data
    lists = ensure_bench_tasks(REPO / "data" / "bench", num_train=budget.num_train, num_val=budget.num_val,
                               frames=16, size=frames.crop_size, seed=0, workers=os.cpu_count())
    encoders = plan(args, budget, lists, out)
    run_benchmark(encoders, budget, lists, out, args)
    table = summarise(encoders)
    header = (f"## Quality, budget {args.budget} ({args.device}): {', '.join(map(str, budget.steps))} pre-training "
              f"steps of batch {budget.batch_size}, {budget.pretrain_seeds} pre-training seed(s), "
              f"{budget.probe_seeds} probe seed(s), {budget.num_train} / {budget.num_val} clips per task; supervised "
              f"row: {'its encoder probed' if args.bound == 'probe' else 'fine-tuned classifier (evals.finetune)'}"
              + (f"; probes with {' '.join(args.probe_overrides)}" if args.probe_overrides else ""))
    text = markdown(table, header)
    tag = args.protocol
    (out / f"quality{tag}.md").write_text(text)
    (out / f"quality{tag}.json").write_text(json.dumps(
        {"budget": dataclasses.asdict(budget), "device": args.device, "overrides": args.overrides,
         "variants": args.variant, "probe_overrides": args.probe_overrides, "table": table}, indent=1, default=list))
    print(text)
    print(f"({(time.monotonic() - started) / 60:.1f} min)  {out / f'quality{tag}.md'}")
    return table


if __name__ == "__main__":
    main()
