"""Export the encoder a checkpoint is evaluated with, as safetensors with its model config.

    python -m vjm.export --checkpoint runs/vjepa_tiny/latest.pt --out encoder.safetensors
    python -m vjm.export --checkpoint runs/vjepa_tiny/latest.pt --encoder encoder --out context.safetensors

The encoder is the one the checkpoint's objective evaluates by default (V-JEPA: the EMA target),
or another of its encoders with --encoder. Load it with ``vjm.models.load_exported(path)``, or
``vjm.models.build(name, weights=path)``; the probe takes it as --checkpoint.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from vjm.config import ConfigError, config_from_dict
from vjm.console import error_line

__all__ = ["export_encoder", "main"]


def export_encoder(checkpoint: str | Path, out: str | Path, which: str | None = None) -> Path:
    """Write the checkpoint's encoder ``which`` (None = its objective's default) to ``out``."""
    from vjm.eval.frozen import load_frozen_encoder
    from vjm.models import save_exported
    from vjm.train.checkpoint import load_checkpoint

    encoder, info = load_frozen_encoder(checkpoint, which)
    config = config_from_dict(load_checkpoint(checkpoint, mmap=True)["config"], where=f"{checkpoint} (saved config)")
    return save_exported(encoder, config.model, out, objective=info.objective, encoder=info.which, step=info.step,
                         checkpoint=info.checkpoint)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m vjm.export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="vjm pre-training checkpoint, e.g. runs/vjepa_tiny/latest.pt")
    parser.add_argument("--out", required=True, help="safetensors file to write, e.g. encoder.safetensors")
    parser.add_argument("--encoder", metavar="CHILD", help="which of the objective's encoders (default: the one "
                                                           "it evaluates)")
    return parser


def main(argv: Sequence[str] | None = None) -> Path:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        path = export_encoder(args.checkpoint, args.out, args.encoder)
    except (ConfigError, FileNotFoundError, ValueError) as e:
        parser.exit(2, error_line(e))
    print(path)
    return path


if __name__ == "__main__":
    main()
