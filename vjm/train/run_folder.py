"""What a run folder keeps of its configs: the one its checkpoint was trained with is never lost.

A run is resumed with the config it was trained with. Keys that only say how long it runs, what it
logs or how it uses the machine (``RESUMABLE_KEYS``) may change on resume; any other difference is
refused in one line naming each change and the two ways on: a new run folder, or
``--allow-config-change``. ``config.yaml`` is written only once the run has really started or resumed,
and a config it held that differs from the new one goes to ``config_history/`` first, with a line in
``config_history/changes.log``:

    changes = resume_changes(saved_config, cfg, allow_change=False)   # ConfigChangeError if refused
    record_config(cfg, step=128, changes=changes)                    # config.yaml (+ history)
"""

from __future__ import annotations

import datetime
import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vjm.config import Config, ConfigError, config_from_dict, config_to_yaml, save_config

__all__ = ["ALLOW_FLAG", "HISTORY_DIR", "RESUMABLE_KEYS", "Change", "ConfigChangeError", "check_run_folder",
           "config_changes", "record_config", "resume_changes"]

# Keys a resumed run may change without asking: run length, logging and checkpoint cadence, where
# and with how many threads and loader workers it runs, and implementation choices that compute the
# same function. Patterns are fnmatch's. Everything else is the recipe.
RESUMABLE_KEYS = (
    "run.name", "run.folder", "run.threads",
    "train.epochs", "train.log_every", "train.checkpoint_every", "train.keep_every", "train.tensorboard",
    "train.image_every", "train.max_nonfinite", "train.max_weight_growth",
    "data.num_workers", "data.pin_memory", "data.decoder",
    "model.scan_backend", "model.checkpoint_blocks",
    # SLURM resources; nodes and tasks are not here: they change the global batch.
    "launch.cpus_per_task", "launch.mem_gb", "launch.partition", "launch.account", "launch.time_min",
    "launch.constraint", "launch.qos", "launch.max_timeouts", "launch.slurm_folder",
)

ALLOW_FLAG = "--allow-config-change"
HISTORY_DIR = "config_history"


class ConfigChangeError(ConfigError):
    """A resume with a config that differs from its checkpoint's in the recipe."""


@dataclass(frozen=True)
class Change:
    key: str
    old: Any
    new: Any

    def __str__(self) -> str:
        return f"{self.key} {_show(self.old)} -> {_show(self.new)}"

    @property
    def resumable(self) -> bool:
        return any(fnmatch.fnmatchcase(self.key, pattern) for pattern in RESUMABLE_KEYS)


def _show(value: Any) -> str:
    return "(absent)" if value is _ABSENT else "null" if value is None else str(value)


_ABSENT = object()


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted keys of nested mappings and of lists of mappings (masks.0.num_blocks); other lists are values."""
    if isinstance(value, Mapping):
        items = value.items()
    elif isinstance(value, (list, tuple)) and value and all(isinstance(v, Mapping) for v in value):
        items = ((str(i), v) for i, v in enumerate(value))
    else:
        return {prefix.rstrip("."): list(value) if isinstance(value, tuple) else value}
    flat: dict[str, Any] = {}
    for key, inner in items:
        flat.update(_flatten(inner, f"{prefix}{key}."))
    return flat


def config_changes(saved: Mapping[str, Any], cfg: Config) -> list[Change]:
    """Every key whose value differs between a checkpoint's saved config dict and ``cfg``.

    The saved dict is read through today's schema first, so keys added since it was written compare
    as their defaults; one the schema no longer reads is compared as written.
    """
    try:
        saved = config_from_dict(saved).to_dict()
    except ConfigError:
        pass
    old, new = _flatten(saved), _flatten(cfg.to_dict())
    return [Change(key, old.get(key, _ABSENT), new.get(key, _ABSENT))
            for key in dict.fromkeys([*old, *new]) if old.get(key, _ABSENT) != new.get(key, _ABSENT)]


def resume_changes(saved: Mapping[str, Any], cfg: Config, *, checkpoint: Path, allow_change: bool) -> list[Change]:
    """The changes from the checkpoint's config; a ConfigChangeError of one line when some change the
    recipe and ``allow_change`` is off."""
    changes = config_changes(saved, cfg)
    recipe = [c for c in changes if not c.resumable]
    if recipe and not allow_change:
        raise ConfigChangeError(
            f"{checkpoint} was trained with another config: {'; '.join(map(str, recipe))}. To start a new run, "
            f"give it its own folder (--set run.folder=runs/<new name>); to continue this one with the change, "
            f"add {ALLOW_FLAG} (the old config is kept in {checkpoint.parent / HISTORY_DIR})")
    return changes


def check_run_folder(cfg: Config, allow_change: bool = False) -> list[Change]:
    """resume_changes against the run folder's checkpoint, if it has one, read cheaply (memory-mapped):
    the launchers' check before a job is queued or a model built. [] for a new run."""
    from .checkpoint import load_checkpoint  # torch: keep it out of this module's import

    latest = cfg.latest_checkpoint
    if not latest.is_file():
        return []
    saved = load_checkpoint(latest, mmap=True).get("config", {})
    return resume_changes(saved, cfg, checkpoint=latest, allow_change=allow_change)


def record_config(cfg: Config, step: int, changes: list[Change] = (), allowed: bool = False) -> Path:
    """Write ``cfg`` as the run folder's config.yaml, first moving a different one it held to the history.

    ``step`` is where the run starts or resumes, ``changes`` those from its checkpoint's config
    (written to the history's changes.log), ``allowed`` whether they were asked for with ALLOW_FLAG.
    """
    path = cfg.run_dir / "config.yaml"
    text = config_to_yaml(cfg)
    if path.is_file():
        previous = path.read_text(encoding="utf-8", errors="replace")
        if previous.split("\n", 1)[-1] == text:  # the same config (the first line is a comment)
            return path
        history = cfg.run_dir / HISTORY_DIR
        history.mkdir(exist_ok=True)
        kept = _free_name(history / f"config.step{step:08d}.yaml")
        kept.write_text(previous, encoding="utf-8")
        what = "; ".join(map(str, changes)) or "config.yaml replaced (no checkpoint to compare with)"
        how = f" ({ALLOW_FLAG})" if allowed and any(not c.resumable for c in changes) else ""
        stamp = datetime.datetime.now().isoformat(timespec="seconds")
        with (history / "changes.log").open("a", encoding="utf-8") as log:
            log.write(f"{stamp} step {step}: {what}{how}; the previous config is {kept.name}\n")
    return save_config(cfg, path)


def _free_name(path: Path) -> Path:
    """``path``, or ``path`` with .1, .2 ... before its suffix when taken (several changes at one step)."""
    candidate, n = path, 0
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.stem}.{n}{path.suffix}")
    return candidate
