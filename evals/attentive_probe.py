"""Frozen evaluation: an attentive probe trained on the tokens of a frozen encoder.

    python -m evals.attentive_probe --fname configs/eval/toy_direction.yaml --checkpoint runs/vjepa_tiny/latest.pt
    python -m evals.attentive_probe --fname configs/eval/toy_direction.yaml --checkpoint ... --random-init
    python -m evals.attentive_probe --fname configs/eval/toy_direction.yaml --checkpoint encoder.safetensors
    python evals/attentive_probe.py --fname configs/eval/ssv2_16x2x3.yaml --checkpoint ... --set 'optim.lr=[1e-3,3e-4]'

The encoder comes from a vjm checkpoint: the one its objective evaluates by default, or another of
its encoders with ``--encoder``; or from an encoder exported by ``python -m vjm.export``. ``--random-init`` builds the same architecture with random weights:
the control every result is compared with. One attentive classifier per (lr, weight decay) pair of
the config trains on the frozen tokens, side by side; the probe resumes when rerun. Results go as
JSON to a folder beside the checkpoint; the path of that file is the last line printed.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vjm.config import ConfigError  # noqa: E402
from vjm.console import debug_requested, error_line, setup_logging  # noqa: E402
from vjm.cpu import use_threads  # noqa: E402
from vjm.data.errors import DataError  # noqa: E402
from vjm.eval.config import load_eval_config  # noqa: E402
from vjm.eval.frozen import encoder_choices, load_frozen_encoder  # noqa: E402
from vjm.eval.probe import run_probe  # noqa: E402
from vjm.eval.probe_state import ProbeResult  # noqa: E402
from vjm.objectives import objective_names  # noqa: E402

logger = logging.getLogger("evals.attentive_probe")

# Deprecated spellings of --encoder from when every checkpoint was V-JEPA's.
ENCODER_ALIASES = {"target": "target_encoder", "context": "encoder"}


def _encoder_help() -> str:
    per_objective = []
    for name in objective_names():
        encoders, default = encoder_choices(name)
        per_objective.append(f"{name}: {', '.join(encoders)} (default {default})")
    choices = "; ".join(per_objective)
    aliases = ", ".join(f"{old} = {new}" for old, new in ENCODER_ALIASES.items())
    return (f"which encoder of the checkpoint's objective to probe ({choices}); default: the objective's own. "
            f"Deprecated spellings: {aliases}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m evals.attentive_probe", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fname", required=True, help="evaluation config, e.g. configs/eval/toy_direction.yaml")
    parser.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help="override config keys, e.g. --set train.epochs=5 'optim.lr=[1e-3,3e-4]'")
    parser.add_argument("--checkpoint", help="vjm pre-training checkpoint whose encoder is probed, or an encoder "
                                             "exported by python -m vjm.export (.safetensors)")
    parser.add_argument("--encoder", metavar="CHILD", help=_encoder_help())
    parser.add_argument("--random-init", action="store_true",
                        help="probe the same encoder randomly initialised: the control")
    parser.add_argument("--pretrain-config", help="with --random-init and no --checkpoint: the pre-training "
                                                  "YAML whose model is built")
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda or cuda:N")
    parser.add_argument("--output-dir", help="where the probe state and results go (default: beside the checkpoint)")
    parser.add_argument("--no-resume", action="store_true", help="start over even if a probe state exists")
    parser.add_argument("--threads", type=int, metavar="N", help="intra-op CPU threads (run.threads); default: "
                        "the cores this process may use less its loader workers, or OMP_NUM_THREADS when set")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error (as VJM_DEBUG=1)")
    return parser


def main(argv: Sequence[str] | None = None) -> ProbeResult:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.random_init and args.encoder is not None:
        parser.error("--random-init builds a new encoder; leave out --encoder")
    setup_logging(0)
    which = args.encoder
    if which in ENCODER_ALIASES:
        logger.warning("--encoder %s is deprecated; write --encoder %s", which, ENCODER_ALIASES[which])
        which = ENCODER_ALIASES[which]
    overrides = [*args.overrides, *([f"run.threads={args.threads}"] if args.threads is not None else [])]
    try:
        cfg = load_eval_config(args.fname, overrides)
        encoder, info = load_frozen_encoder(args.checkpoint, which, random_init=args.random_init,
                                            pretrain_config=args.pretrain_config, seed=cfg.run.seed)
    except (ConfigError, FileNotFoundError, ValueError) as exc:
        parser.exit(2, error_line(exc))
    use_threads(cfg.run.threads, workers=cfg.data.num_workers)
    try:
        result = run_probe(cfg, encoder, info, args.output_dir, args.device, resume=not args.no_resume)
    except (ConfigError, DataError, FileNotFoundError) as exc:
        if debug_requested(args.debug):
            raise
        parser.exit(2, error_line(exc))
    print(f"{cfg.run.name}: top1 {result.top1:.2f}  top5 {result.top5:.2f}  ({info.objective} {info.which})")
    print(result.results_path)
    return result


if __name__ == "__main__":
    main()
