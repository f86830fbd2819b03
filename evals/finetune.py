"""Fine-tuning: a vjm checkpoint's encoder and a classifier head trained end to end on labels, then
evaluated; with --random-init the same encoder from scratch (the supervised baseline).

    python -m evals.finetune --fname configs/eval/finetune_toy.yaml --checkpoint runs/vjepa_tiny/latest.pt
    python -m evals.finetune --fname configs/eval/finetune_toy.yaml --random-init
    python -m evals.finetune --fname configs/eval/finetune_k400_tiny.yaml --checkpoint ... --slurm
    python -m evals.finetune --fname ... --checkpoint ... --devices cuda:0 cuda:1 --set optim.layer_decay=0.8

The config is a pre-training config whose objective is ``supervised`` (vjm/objectives/supervised.py:
head, mixup, cutmix, EMA, evaluation segments x views; optim.layer_decay, model.drop_path and the
data augmentations are the usual keys). The encoder starts from the checkpoint's (the one its
objective evaluates by default, or --encoder), which must be of the config's model. Training runs
through pre-training's engine and launchers: DDP over --devices, or a SLURM job with --slurm (the
config's launch section), bf16 on GPUs, exact resume when the same command runs again, log.csv and
TensorBoard. The run folder is named after the config (finetune_toy) beside the checkpoint
(runs/finetune_toy_random_init for --random-init) unless run.folder or --output-dir says
otherwise; results.json goes there, and its path is the last line printed.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml  # noqa: E402

from launch.local import check_devices, default_devices, launch_local  # noqa: E402
from vjm.config import Config, ConfigError, load_config  # noqa: E402
from vjm.console import setup_logging  # noqa: E402
from vjm.eval.finetune import check_finetune_config, results_path, train_and_evaluate  # noqa: E402
from vjm.eval.frozen import load_encoder_weights  # noqa: E402
from vjm.models import build_encoder  # noqa: E402
from vjm.train.stopping import RunHalted  # noqa: E402

logger = logging.getLogger("evals.finetune")


def _folder_given(fname: str, overrides: Sequence[str]) -> bool:
    """Whether the config file or an override names run.folder."""
    raw = yaml.safe_load(Path(fname).read_text()) or {}
    run = raw.get("run") if isinstance(raw, dict) else None
    return (isinstance(run, dict) and run.get("folder") is not None) or any(
        o.partition("=")[0].strip() == "run.folder" for o in overrides)


def default_run_folder(cfg: Config) -> Path:
    """<name> (the config's stem, e.g. finetune_k400_tiny) beside the checkpoint, suffixed with a
    non-default encoder, or runs/<name>_random_init from scratch."""
    init = cfg.objective.init
    if init.checkpoint is None:
        return Path("runs") / f"{cfg.run.name}_random_init"
    suffix = f"_{init.encoder}" if init.encoder is not None else ""
    return Path(init.checkpoint).parent / f"{cfg.run.name}{suffix}"


def build_config(args) -> Config:
    """The config with the command line's init and run folder; refuses an unusable checkpoint now,
    before any process is started."""
    check_finetune_config(load_config(args.fname, args.overrides))
    overrides = list(args.overrides)
    if args.random_init:
        overrides += ["objective.init.checkpoint=null", "objective.init.encoder=null"]
    elif args.checkpoint is not None:
        # Absolute: the saved config and results.json name it wherever the run is resumed from.
        overrides.append(f"objective.init.checkpoint={json.dumps(str(Path(args.checkpoint).absolute()))}")
    if args.encoder is not None:
        overrides.append(f"objective.init.encoder={args.encoder}")
    cfg = load_config(args.fname, overrides)
    if cfg.objective.init.checkpoint is None and not args.random_init:
        raise ValueError("give --checkpoint PATH (a vjm checkpoint whose encoder is fine-tuned), or --random-init "
                         "to train the same encoder from scratch")
    if args.output_dir is not None or not _folder_given(args.fname, args.overrides):
        folder = args.output_dir if args.output_dir is not None else default_run_folder(cfg)
        cfg = load_config(args.fname, [*overrides, f"run.folder={json.dumps(str(folder))}"])
    if cfg.objective.init.checkpoint is not None:
        load_encoder_weights(build_encoder(cfg.model), cfg.model, cfg.objective.init.checkpoint,
                             cfg.objective.init.encoder)
    return cfg


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m evals.finetune", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fname", required=True, help="fine-tuning config, e.g. configs/eval/finetune_toy.yaml")
    parser.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help="override config keys, e.g. --set optim.layer_decay=0.8 train.epochs=5")
    start = parser.add_mutually_exclusive_group()
    start.add_argument("--checkpoint", help="vjm checkpoint whose encoder is fine-tuned (any objective's), or an "
                       "encoder written by python -m vjm.export")
    start.add_argument("--random-init", action="store_true", help="train the same encoder from scratch: the "
                                                                  "supervised baseline")
    parser.add_argument("--encoder", metavar="CHILD", help="which encoder of the checkpoint's objective (default: "
                                                           "the one it evaluates)")
    parser.add_argument("--output-dir", help="the run folder (default: the config's name beside the checkpoint)")
    parser.add_argument("--devices", nargs="+", metavar="DEVICE",
                        help="one process per device: cpu (repeatable), cuda, cuda:N; default: every GPU, else cpu")
    parser.add_argument("--slurm", action="store_true", help="submit a SLURM job (the config's launch section) "
                                                             "that trains and evaluates, and return")
    parser.add_argument("--threads", type=int, metavar="N", help="intra-op CPU threads of each process "
                                                                  "(run.threads); default: vjm.cpu's share")
    return parser


def main(argv: Sequence[str] | None = None) -> dict | None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.threads is not None:
        args.overrides.append(f"run.threads={args.threads}")
    if args.random_init and args.encoder is not None:
        parser.error("--random-init builds a new encoder; leave out --encoder")
    setup_logging(0)
    try:
        cfg = build_config(args)
        devices = check_devices(args.devices or default_devices())
    except (ConfigError, FileNotFoundError, ValueError) as exc:
        parser.exit(2, f"error: {exc}\n")
    if args.slurm:
        from launch.submitit import submit  # submitit only when submitting

        job = submit(cfg, train_fn=train_and_evaluate)
        print(f"Submitted job {job.job_id}; logs in {job.paths.folder}; results will be written to")
        print(results_path(cfg))
        return None
    try:
        launch_local(cfg, devices, train_fn=train_and_evaluate)
    except RunHalted as halt:
        parser.exit(halt.exit_code, f"{halt}\n")
    except KeyboardInterrupt:
        parser.exit(128 + signal.SIGINT, "interrupted before training started\n")
    results = json.loads(results_path(cfg).read_text())
    start = "random init" if results["init"] == "random_init" else results["init"]["checkpoint"]
    print(f"{cfg.run.name}: top1 {results['top1']:.2f}  top5 {results['top5']:.2f}  ({cfg.model.name} from {start})")
    print(results_path(cfg))
    return results


if __name__ == "__main__":
    main()
