"""Checkpoint -> frozen encoder: the encoder an evaluation runs, and the random-init control.

    encoder, info = load_frozen_encoder("runs/vjepa_tiny/latest.pt")              # the objective's default
    encoder, info = load_frozen_encoder("runs/vjepa_tiny/latest.pt", "encoder")   # another of its encoders
    encoder, info = load_frozen_encoder("runs/vjepa_tiny/latest.pt", random_init=True, seed=0)   # the control
    encoder, info = load_frozen_encoder("encoder.safetensors")   # an encoder exported by python -m vjm.export

A checkpoint names its objective, and the objective (vjm.objectives) says which of its children are
encoders and which one is evaluated by default: nothing here knows an objective by name. The
encoder is rebuilt from the checkpoint's own config and its weights are loaded strictly.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from vjm.config import ModelConfig, config_from_dict, load_config
from vjm.models import build_encoder
from vjm.models.exported import exported_model, is_exported, load_exported, read_exported
from vjm.models.weights import load_weights
from vjm.objectives import objective_class, objective_names
from vjm.train.checkpoint import load_checkpoint

from .features import encoder_fingerprint
from .probe_state import PROBE_FORMAT

__all__ = ["RANDOM_INIT", "EncoderInfo", "encoder_choices", "load_encoder_weights", "load_frozen_encoder"]

# EncoderInfo.which of an encoder built with random weights.
RANDOM_INIT = "random_init"


@dataclass(frozen=True)
class EncoderInfo:
    """Which encoder was evaluated: enough to name the results and to refuse resuming on another."""

    model: str
    embed_dim: int
    checkpoint: str | None  # absolute path, or None for a random encoder built from a config
    objective: str  # the pre-training objective whose encoder this is
    which: str  # the objective's child that was loaded, or RANDOM_INIT
    step: int | None  # pre-training step of the checkpoint (None for a random-init encoder)
    fingerprint: str  # digest of the weights

    @property
    def random_init(self) -> bool:
        return self.which == RANDOM_INIT

    @property
    def is_default(self) -> bool:
        """Whether this is the encoder its objective evaluates by default."""
        return self.which == objective_class(self.objective).eval_encoder


def encoder_choices(objective: str) -> tuple[tuple[str, ...], str]:
    """(the children of ``objective`` that are encoders, the one evaluated by default)."""
    cls = objective_class(objective)
    return cls.encoders, cls.eval_encoder


def load_frozen_encoder(checkpoint: str | os.PathLike | None = None, which: str | None = None, *,
                        random_init: bool = False, pretrain_config: str | os.PathLike | None = None,
                        seed: int = 0) -> tuple[nn.Module, EncoderInfo]:
    """The encoder to evaluate, frozen (eval mode, no gradients), and what it is.

    From ``checkpoint``: its child ``which`` (None = the default of the checkpoint's objective), or
    with ``random_init`` the same architecture randomly initialised (seeded by ``seed``). Without a
    checkpoint, ``random_init`` with ``pretrain_config`` (a pre-training YAML) names the architecture.
    Raises FileNotFoundError for a missing file and ValueError, saying what was wrong, for a file
    that is not a pre-training checkpoint, an objective this vjm does not know, a child that is not
    one of the objective's encoders, or weights of another model.
    """
    if random_init and which is not None:
        raise ValueError(f"random_init builds a new encoder; it takes no child to load (got which={which!r})")
    step = None
    if checkpoint is not None and is_exported(checkpoint):
        return _exported_encoder(Path(checkpoint), which, random_init, seed)
    if checkpoint is None:
        if not (random_init and pretrain_config is not None):
            raise ValueError("give --checkpoint PATH (a vjm pre-training checkpoint), or --random-init with "
                             "--pretrain-config YAML to build a random encoder of that config's model")
        cfg = load_config(pretrain_config, check_data=False)  # only its model is built
    else:
        path = Path(checkpoint)
        state = _read_pretraining_checkpoint(path)
        cfg = config_from_dict(state["config"], where=f"{path} (saved config)")
        step = state["step"] if isinstance(state.get("step"), int) else None
        if not random_init:
            which = _choose_encoder(path, state, which)
            encoder = build_encoder(cfg.model)
            # The encoder is built from the checkpoint's own config: weights that do not fit were edited or mixed.
            load_weights(encoder, state["models"][which], source=f"checkpoint {path} ({which!r})", model=cfg.model,
                         saved_model=None, remedy=f"The encoder was built from the checkpoint's own config, as "
                         f"{cfg.model.name!r}: weights of another model, or an edited file?")
            _refuse_nonfinite(encoder, path, which, step)
    if random_init:
        encoder, which, step = _random_encoder(cfg.model, seed), RANDOM_INIT, None
    return _frozen(encoder, cfg.model, checkpoint, cfg.objective.name, which, step)


def _random_encoder(model: ModelConfig, seed: int) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_encoder(model)


def _frozen(encoder: nn.Module, model: ModelConfig, checkpoint: str | os.PathLike | None, objective: str,
            which: str, step: int | None) -> tuple[nn.Module, EncoderInfo]:
    encoder.eval().requires_grad_(False)
    info = EncoderInfo(model=model.name, embed_dim=int(encoder.embed_dim),
                       checkpoint=None if checkpoint is None else str(Path(checkpoint).resolve()),
                       objective=objective, which=which, step=step, fingerprint=encoder_fingerprint(encoder))
    return encoder, info


def _exported_child(path: Path, meta: dict[str, str], which: str | None) -> str:
    """The encoder an exported file holds, checked against the one asked for."""
    saved = meta.get("encoder", "encoder")
    if which is not None and which != saved:
        raise ValueError(f"{path} is an exported encoder: it holds only {saved!r}, not {which!r}; leave out "
                         "--encoder, or export that one from the training checkpoint (python -m vjm.export --encoder)")
    return saved


def _exported_step(meta: dict[str, str]) -> int | None:
    return int(meta["step"]) if meta.get("step", "").isdigit() else None


def _exported_encoder(path: Path, which: str | None, random_init: bool, seed: int) -> tuple[nn.Module, EncoderInfo]:
    """The encoder of a file written by python -m vjm.export (or the same architecture, random)."""
    encoder, meta = load_exported(path)
    saved = _exported_child(path, meta, which)
    model = exported_model(meta)
    objective = meta.get("objective", "unknown")
    if random_init:
        return _frozen(_random_encoder(model, seed), model, path, objective, RANDOM_INIT, None)
    step = _exported_step(meta)
    _refuse_nonfinite(encoder, path, saved, step)
    return _frozen(encoder, model, path, objective, saved, step)


def load_encoder_weights(encoder: nn.Module, model: ModelConfig, checkpoint: str | os.PathLike,
                         which: str | None = None) -> EncoderInfo:
    """Initialise ``encoder`` (built from ``model``, a fine-tuning config's section) with child ``which``
    of a pre-training checkpoint (None = its objective's default), or with the encoder of a file
    written by python -m vjm.export: the start of fine-tuning.

    Unlike load_frozen_encoder the encoder is built by the caller, so its drop path or scan may differ
    from pre-training's; the model family's ``adapt_state_dict`` makes related weights fit (a 1-scan
    checkpoint into a 4-scan model). The errors are load_frozen_encoder's, and weights of another
    model size are refused in one line naming the keys that differ.
    """
    path = Path(checkpoint)
    if is_exported(path):
        weights, saved, meta = read_exported(path)
        which, objective, step = _exported_child(path, meta, which), meta.get("objective", "unknown"), \
            _exported_step(meta)
        saved_model, source = dataclasses.asdict(saved), f"exported encoder {path} ({which!r})"
    else:
        state = _read_pretraining_checkpoint(path)
        which, objective = _choose_encoder(path, state, which), state["objective"]
        weights, step = state["models"][which], state["step"] if isinstance(state.get("step"), int) else None
        saved_model = state["config"].get("model") if isinstance(state["config"], dict) else None
        source = f"checkpoint {path} ({which!r})"
    adapt = getattr(encoder, "adapt_state_dict", None)
    if adapt is not None:
        weights = adapt(weights)
    load_weights(encoder, weights, source=source, model=model, saved_model=saved_model,
                 remedy="Fine-tune it with the model section it was trained with, or pass a checkpoint of this model")
    _refuse_nonfinite(encoder, path, which, step)
    return EncoderInfo(model=model.name, embed_dim=int(encoder.embed_dim), checkpoint=str(path.resolve()),
                       objective=objective, which=which, step=step, fingerprint=encoder_fingerprint(encoder))


def _read_pretraining_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint's state (upgraded to today's format), checked to be a pre-training checkpoint
    of a registered objective."""
    if path.is_dir():
        raise FileNotFoundError(f"{path} is a folder; pass the checkpoint file inside it, e.g. {path / 'latest.pt'}")
    try:
        state = load_checkpoint(path)  # FileNotFoundError, or ValueError: unreadable or not a vjm checkpoint
    except ValueError as exc:
        if repr(PROBE_FORMAT) in str(exc):
            raise ValueError(f"{path} is the state of an attentive probe, not a pre-training checkpoint; "
                             "pass the checkpoint the probe was trained on") from None
        raise
    missing = [k for k in ("config", "objective", "models") if k not in state]
    if missing:
        raise ValueError(f"checkpoint {path} lacks {missing}: a vjm pre-training checkpoint holds 'config', "
                         f"'objective' and 'models'; this one has {sorted(state)}")
    if state["objective"] not in objective_names():
        raise ValueError(f"checkpoint {path} was written by objective {state['objective']!r}, which this vjm does "
                         f"not register (it has: {', '.join(objective_names())}); evaluate it with the vjm "
                         "that wrote it")
    if not isinstance(state["models"], dict):
        raise ValueError(f"checkpoint {path}: 'models' should map child names to weights, got "
                         f"{type(state['models']).__name__}")
    return state


def _choose_encoder(path: Path, state: dict[str, Any], which: str | None) -> str:
    """``which``, or the objective's default, checked to be one of its encoders that the file holds."""
    objective = state["objective"]
    encoders, default = encoder_choices(objective)
    held = [name for name in encoders if name in state["models"]]
    which = default if which is None else which
    if which not in held:
        reason = (f"holds no {which!r} (it has {sorted(state['models'])})" if which in encoders
                  else f"has no encoder {which!r}")
        choices = ", ".join(held) if held else "none: the file holds none of them"
        raise ValueError(f"checkpoint {path} ({objective!r} objective) {reason}; choose an encoder from: {choices} "
                         f"(the objective's default is {default!r})")
    return which


def _refuse_nonfinite(encoder: nn.Module, path: Path, which: str, step: int | None) -> None:
    """A diverged encoder (NaN or inf weights) would be probed to chance without a word: refuse it."""
    tensors = encoder.state_dict()
    bad = [name for name, tensor in tensors.items() if tensor.is_floating_point() and not tensor.isfinite().all()]
    if bad:
        at = f" (step {step})" if step is not None else ""
        raise ValueError(f"checkpoint {path}{at}: its {which!r} weights are not finite (NaN or inf in {len(bad)} of "
                         f"{len(tensors)} tensors, e.g. {bad[0]!r}): the run diverged before this checkpoint was "
                         "written. Probe an earlier checkpoint (train.keep_every keeps them), or retrain with a "
                         "lower optim.lr")
