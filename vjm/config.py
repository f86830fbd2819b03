"""Run configuration: YAML -> typed, validated, nested dataclasses.

The config is the single source of truth for a run. Every key is declared once below, with its
type, default, a one-line description (``help``) and, where it matters, its allowed range or
choices; checking is generic, driven by that metadata. Unknown keys are errors that name the full
dotted key and suggest the nearest valid one.

    cfg = load_config("configs/vjepa_tiny.yaml", ["optim.lr=1e-3", "masks.0.num_blocks=4"])
    save_config(cfg, cfg.run_dir / "config.yaml")   # reloads to an equal Config
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import os
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import yaml

__all__ = [
    "Config",
    "ConfigError",
    "DataConfig",
    "DuplicateKeyError",
    "LaunchConfig",
    "ModelConfig",
    "ObjectiveConfig",
    "OptimConfig",
    "Range",
    "RunConfig",
    "objective_sections",
    "TrainConfig",
    "all_keys",
    "apply_overrides",
    "config_from_dict",
    "config_to_yaml",
    "load_config",
    "save_config",
    "validate_config",
]


class ConfigError(ValueError):
    """A config that cannot be used; the message names every problem, one per line."""


@dataclass(frozen=True)
class Range:
    """Allowed numeric interval; ``None`` leaves a side unbounded. Closed unless ``open_lo``/``open_hi``."""

    lo: float | None = None
    hi: float | None = None
    open_lo: bool = False
    open_hi: bool = False

    def __contains__(self, x: float) -> bool:
        if self.lo is not None and (x <= self.lo if self.open_lo else x < self.lo):
            return False
        if self.hi is not None and (x >= self.hi if self.open_hi else x > self.hi):
            return False
        return True

    def __str__(self) -> str:
        if self.lo is not None and self.hi is not None:
            return f"{'(' if self.open_lo else '['}{self.lo}, {self.hi}{')' if self.open_hi else ']'}"
        if self.lo is not None:
            return f"{'>' if self.open_lo else '>='} {self.lo}"
        if self.hi is not None:
            return f"{'<' if self.open_hi else '<='} {self.hi}"
        return "any value"


NONNEG = Range(0)
POSITIVE = Range(0, open_lo=True)
AT_LEAST_1 = Range(1)
PROB = Range(0, 1)


def param(
    default: Any,
    help: str,
    *,
    range: Range | None = None,
    choices: Sequence[Any] | None = None,
    ascending: bool = False,
    check: Callable[[Any], str | None] | None = None,
    variants: Callable[[], Mapping[str, type]] | None = None,
    default_from: Callable[[Mapping[str, Any]], Any] | None = None,
) -> Any:
    """Declare a config key.

    ``range`` applies to a number or to every number of a tuple/list; ``choices`` lists the allowed
    values; ``ascending`` requires a pair to be (low, high); ``check`` returns an error message or None.
    ``variants`` makes a section whose schema its ``name`` key chooses: it returns {name: dataclass}.
    ``default_from`` gives the value an override starts from when the key is unset (e.g. the
    objective's default masks), from the raw config.
    """
    metadata = {"help": help, "range": range, "choices": tuple(choices) if choices else None,
                "ascending": ascending, "check": check, "variants": variants, "default_from": default_from}
    if isinstance(default, (list, dict)) or dataclasses.is_dataclass(default):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


# --------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------


@dataclass
class RunConfig:
    """Identity of the run and where it writes."""

    name: str | None = param(None, "run name; defaults to the config file's stem")
    folder: str | None = param(None, "where checkpoints, logs and the resolved config go; defaults to runs/<name>")
    seed: int = param(0, "seed of every random generator (offset by rank in each process)", range=Range(0, 2**32 - 1))
    threads: int | None = param(None, "intra-op CPU threads of each process; None = OMP_NUM_THREADS when set, "
                                      "else the cores the process may use less its loader workers (vjm.cpu)",
                                range=AT_LEAST_1)


@dataclass
class DataConfig:
    """What is read and how clips are sampled and augmented."""

    dataset: str = param("toy", "dataset kind: video files, image files, or the generated toy videos",
                         choices=("video", "image", "toy"))
    train: list[str] = param([], "training sources: file lists (csv/txt) or folders (video and image datasets)")
    weights: list[float] | None = param(None, "sampling weight of each train source; None = proportional to size",
                                        range=POSITIVE)
    val: list[str] = param([], "validation sources, same forms as train (used by evals)")
    toy_root: str = param("data/toy", "folder the toy dataset is generated into (once) and read from")
    toy_task: str = param("direction", "label of the toy videos: the digit shown, or its motion direction",
                          choices=("digit", "direction"))
    toy_num_train: int = param(1024, "number of toy training videos", range=AT_LEAST_1)
    toy_num_val: int = param(256, "number of toy validation videos", range=AT_LEAST_1)
    toy_frames: int = param(16, "frames per toy video", range=AT_LEAST_1)
    toy_size: int = param(64, "height and width of toy frames in pixels", range=Range(8))
    frames_per_clip: int = param(16, "frames per sampled clip (1 = image)", range=AT_LEAST_1)
    frame_step: int = param(4, "stride between sampled frames (ignored when fps is set)", range=AT_LEAST_1)
    fps: float | None = param(None, "sample frames at this rate instead of every frame_step frames",
                              range=POSITIVE)
    num_clips: int = param(1, "clips sampled per video per step", range=AT_LEAST_1)
    crop_size: int = param(224, "side of the square training crop in pixels", range=AT_LEAST_1)
    random_resize_scale: tuple[float, float] = param((0.3, 1.0), "area fraction range of the random resized crop",
                                                     range=Range(0, 1, open_lo=True), ascending=True)
    random_resize_aspect: tuple[float, float] = param((0.75, 1.35), "aspect ratio range of the random resized crop",
                                                      range=POSITIVE, ascending=True)
    hflip: bool = param(True, "random horizontal flip of the whole clip")
    randaugment: bool = param(False, "RandAugment applied identically to every frame of a clip")
    random_erasing: float = param(0.0, "probability of random erasing (same box on every frame)", range=PROB)
    decoder: str = param("pyav", "video decoding library", choices=("pyav", "decord"))
    short_video: str = param("pad", "videos shorter than a clip: repeat the last frame, or skip (counted)",
                             choices=("pad", "skip"))
    batch_size: int = param(32, "clips per batch in each process", range=AT_LEAST_1)
    num_workers: int = param(8, "data loader worker processes per training process", range=NONNEG)
    pin_memory: bool = param(True, "page-locked host memory for faster copies to the GPU")


@dataclass
class ModelConfig:
    """The encoder (context and EMA target share it)."""

    name: str = param("videomamba_tiny", "encoder name in the model registry (vjm.models)")
    embed_dim: int | None = param(None, "override the registered width (None = the size's own)", range=AT_LEAST_1)
    depth: int | None = param(None, "override the registered number of blocks (None = the size's own)",
                              range=AT_LEAST_1)
    patch_size: int = param(16, "spatial side of a patch in pixels", range=AT_LEAST_1)
    tubelet_size: int = param(2, "frames per token", range=AT_LEAST_1)
    drop_path: float = param(0.0, "stochastic depth rate of the last block (linear in depth)",
                             range=Range(0, 1, open_hi=True))
    scan_backend: str = param("auto", "selective-scan implementation; auto = fastest importable",
                              choices=("auto", "torch", "mamba_ssm", "triton"))
    bidirectional_merge: str = param("mean", "how the forward and backward scans are combined",
                                     choices=("mean", "sum"))
    scan: str | None = param(None, "scan directions of each Mamba mixer: uni (one, raster order), bi (forward "
                             "and backward), quad (rows and columns, both ways); None = the model's own. A "
                             "1-scan checkpoint initialises every direction of a bi or quad model (ARM's "
                             "fine-tuning)", choices=("uni", "bi", "quad"))
    checkpoint_blocks: int = param(0, "recompute the first N blocks in the backward instead of keeping "
                                   "their activations: less memory for more compute (VideoMamba's checkpoint_num)",
                                   range=NONNEG)


def _check_specs(what: str, example: str) -> Callable[[list[dict[str, Any]]], str | None]:
    """Check a list of {kind: <registry name>, <params>...} entries (masks, regularizers)."""

    def check(specs: list[dict[str, Any]]) -> str | None:
        for i, spec in enumerate(specs):
            if not isinstance(spec.get("kind"), str):
                return f"item {i} needs a 'kind' string (the {what}'s registry name), e.g. {example}; got {spec!r}"
        return None

    return check


@dataclass
class ObjectiveConfig:
    """Base of every objective's section. ``name`` chooses the objective; the section's other keys
    are that objective's own, declared by the dataclass it registers (vjm.objectives).

    Class attributes an objective's section sets: ``needs_masks`` (the engine draws masks for it)
    and ``default_masks`` (used when a config leaves ``masks`` out).
    """

    needs_masks: ClassVar[bool] = False
    default_masks: ClassVar[tuple[dict[str, Any], ...]] = ()

    name: str = param("vjepa", "pre-training objective; its own keys are documented in vjm/objectives/<name>.py")

    def cross_check(self, cfg: "Config") -> list[str]:
        """Problems between this section and the rest of the config (none by default)."""
        return []


@dataclass
class OptimConfig:
    """AdamW with warmup + cosine schedules for lr and weight decay, and the target EMA."""

    lr: float = param(6.25e-4, "peak learning rate (after warmup)", range=POSITIVE)
    start_lr: float = param(2e-4, "learning rate at step 0 (linear warmup to lr)", range=NONNEG)
    final_lr: float = param(1e-6, "learning rate at the last step (cosine decay from lr)", range=NONNEG)
    warmup_steps: int = param(2000, "optimiser steps of linear warmup", range=NONNEG)
    weight_decay: float = param(0.04, "AdamW weight decay at step 0", range=NONNEG)
    final_weight_decay: float = param(0.4, "weight decay at the last step (cosine schedule)", range=NONNEG)
    betas: tuple[float, float] = param((0.9, 0.999), "AdamW betas", range=Range(0, 1, open_hi=True))
    eps: float = param(1e-8, "AdamW epsilon", range=POSITIVE)
    clip_grad: float = param(10.0, "max global gradient norm; 0 = no clipping", range=NONNEG)
    layer_decay: float = param(1.0, "layer-wise lr decay: the encoder's block i of L trains at lr x "
                               "layer_decay^(L - i), its embedding at layer_decay^(L + 1), the rest (final norm, "
                               "head) at lr; 1 = off (fine-tuning; see vjm.train.optim)",
                               range=Range(0, 1, open_lo=True))
    head_lr_scale: float = param(1.0, "lr multiplier of the parameters outside the evaluated encoder (a new "
                                 "classifier head; in pre-training, also a decoder or predictor): a head that "
                                 "starts from nothing learns at the probe's rate while the encoder moves slowly; "
                                 "1 = off", range=POSITIVE)
    encoder_frozen_steps: int = param(0, "optimiser steps at the start during which the evaluated encoder keeps its "
                                      "weights (lr 0) and only the parameters outside it (a new head) train; then "
                                      "the encoder warms up over warmup_steps and joins the schedule: a probe "
                                      "first, then fine-tuning (LP-FT); 0 = off", range=NONNEG)
    accum_steps: int = param(1, "micro-batches accumulated per optimiser step", range=AT_LEAST_1)


@dataclass
class TrainConfig:
    """The training loop: length, precision, checkpoints, logging."""

    epochs: int = param(300, "training epochs", range=AT_LEAST_1)
    steps_per_epoch: int | None = param(None, "optimiser steps per epoch; None = one pass over the loader",
                                        range=AT_LEAST_1)
    dtype: str = param("auto", "autocast dtype; auto = bf16 on CUDA, fp32 on CPU", choices=("auto", "bf16", "fp32"))
    checkpoint_every: int = param(500, "steps between writes of latest.pt", range=AT_LEAST_1)
    keep_every: int = param(0, "steps between kept copies of the checkpoint; 0 = keep none", range=NONNEG)
    log_every: int = param(20, "steps between log lines", range=AT_LEAST_1)
    max_nonfinite: int = param(10, "consecutive non-finite losses before training stops", range=AT_LEAST_1)
    max_weight_growth: float = param(2.0, "factor by which one optimiser step may grow the norm of the trained "
                                          "weights before the run counts as diverged; 0 = no check", range=NONNEG)
    tensorboard: bool = param(True, "write TensorBoard scalars under <run folder>/tb")
    image_every: int = param(0, "steps between the objective's pictures in TensorBoard (MAE: input, mask, "
                             "reconstruction); 0 = none", range=NONNEG)


@dataclass
class LaunchConfig:
    """Resources of a SLURM job (launch.submitit)."""

    nodes: int = param(1, "SLURM nodes", range=AT_LEAST_1)
    tasks_per_node: int = param(8, "processes per node (one per GPU)", range=AT_LEAST_1)
    gpus_per_node: int = param(8, "GPUs per node; 0 = CPU-only job", range=NONNEG)
    cpus_per_task: int = param(10, "CPU cores per process (data workers + 1 or 2)", range=AT_LEAST_1)
    mem_gb: float = param(0.0, "memory per node in GB; 0 = the partition's default", range=NONNEG)
    partition: str | None = param(None, "SLURM partition; None = the cluster's default")
    account: str | None = param(None, "SLURM account charged; None = the user's default")
    time_min: int = param(4320, "wall-clock limit of one job in minutes (the run requeues and resumes after it)",
                          range=AT_LEAST_1)
    constraint: str | None = param(None, "SLURM --constraint (node features, e.g. 'h100')")
    qos: str | None = param(None, "SLURM quality of service")
    max_timeouts: int = param(20, "times a job that reaches time_min is requeued (preemptions do not count)",
                              range=NONNEG)
    slurm_folder: str | None = param(None, "folder for SLURM scripts and logs; defaults to <run folder>/slurm")


@dataclass
class Config:
    """One run: every section, plus the mask generators."""

    run: RunConfig = dataclasses.field(default_factory=RunConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    objective: ObjectiveConfig = param(ObjectiveConfig(), "the pre-training objective: {name: <registry name>, "
                                       "<its keys>...}", variants=lambda: objective_sections())
    masks: list[dict[str, Any]] | None = param(None, "mask generators: [{kind: <registry name>, <params>...}]; "
                                               "None = the objective's default",
                                               check=_check_specs("mask generator", "{kind: multiblock}"),
                                               default_from=lambda raw: _objective_of(raw).default_masks)
    regularizers: list[dict[str, Any]] = param([], "regularisers added to the objective's loss: [{kind: <registry "
                                               "name>, <params>...}] (vjm.regularizers)",
                                               check=_check_specs("regulariser", "{kind: vicreg}"))
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    launch: LaunchConfig = dataclasses.field(default_factory=LaunchConfig)

    def __post_init__(self) -> None:
        # Keys whose defaults derive from others are filled here, once, so that the saved config
        # holds concrete values and reloads to an equal Config.
        if self.run.name is None:
            self.run.name = "vjm"
        if self.run.folder is None:
            self.run.folder = f"runs/{self.run.name}"
        if self.launch.slurm_folder is None:
            self.launch.slurm_folder = f"{self.run.folder}/slurm"
        if type(self.objective) is ObjectiveConfig:  # a bare {name: ...}: the objective's own defaults
            self.objective = objective_sections()[self.objective.name]()
        if self.masks is None:
            self.masks = copy.deepcopy(list(self.objective.default_masks))

    @property
    def run_dir(self) -> Path:
        """Folder of this run: checkpoints, logs, the resolved config."""
        return Path(self.run.folder)

    @property
    def latest_checkpoint(self) -> Path:
        """The run's checkpoint: written every train.checkpoint_every steps, resumed from when it exists."""
        return self.run_dir / "latest.pt"

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (lists, not tuples) that YAML can write and config_from_dict reads back."""
        return _plain(dataclasses.asdict(self))


def objective_sections() -> dict[str, type[ObjectiveConfig]]:
    """{name: config dataclass} of every registered objective."""
    # Imported here, not at the top: the objectives import this module for its `param` machinery.
    from vjm.objectives.registry import objective_configs

    return objective_configs()


def _objective_of(raw: Mapping[str, Any]) -> type[ObjectiveConfig]:
    """The section class of the objective a raw config names (the default objective if none)."""
    section = raw.get("objective")
    name = section.get("name") if isinstance(section, Mapping) else None
    sections = objective_sections()
    return sections.get(name if name is not None else ObjectiveConfig().name, ObjectiveConfig)


def _plain(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


# --------------------------------------------------------------------------------------------
# Generic checking, driven by the type hints and field metadata
# --------------------------------------------------------------------------------------------


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_section(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _section_class(f: dataclasses.Field, tp: type, raw: Any) -> type:
    """The schema of section ``f``: its declared type, or the variant that ``raw``'s name chooses."""
    variants = f.metadata.get("variants")
    if variants is None:
        return tp
    name = raw.get("name") if isinstance(raw, Mapping) else None
    return variants().get(name if name is not None else _field_default(f).name, tp)


def all_keys(cls: type | None = None, prefix: str = "") -> list[str]:
    """Every valid dotted key, sections included (e.g. 'optim', 'optim.lr'); a section with variants
    lists the keys of all of them."""
    cls = Config if cls is None else cls
    keys = []
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        keys.append(key)
        if _is_section(hints[f.name]):
            variants = f.metadata.get("variants")
            for section in (variants().values() if variants else [hints[f.name]]):
                keys.extend(k for k in all_keys(section, key + ".") if k not in keys)
    return keys


def _unknown_variant(key: str, raw: Any, variants: Mapping[str, type]) -> str:
    name = raw.get("name") if isinstance(raw, Mapping) else raw
    near = difflib.get_close_matches(str(name), list(variants), n=1)
    hint = f"; did you mean {near[0]!r}?" if near else ""
    return f"'{key}.name' = {name!r} is not one of {', '.join(repr(v) for v in sorted(variants))}{hint}"


# Keys that moved when objectives became plugins: an old config gets told where each went.
_VICREG = "regularizers: [{kind: vicreg, apply_to: context, var_weight: ..., cov_weight: ...}]"
MOVED_KEYS = {
    "predictor": "objective.predictor (V-JEPA's own section)",
    "optim.ema_momentum": "objective.ema_momentum (V-JEPA's own section)",
    "objective.context_var_weight": _VICREG,
    "objective.context_cov_weight": _VICREG,
}


# Names other code bases give to vjm's keys (the last part of a key). A key with one of these, or
# with a valid name in the wrong section (optim.epochs), is answered with the key it means before
# any key that is merely spelt alike (optim.learning_rate is optim.lr, not optim.clip_grad).
SYNONYMS = {
    "learning_rate": "lr", "base_lr": "lr", "peak_lr": "lr", "blr": "lr", "min_lr": "final_lr",
    "end_lr": "final_lr", "warmup_lr": "start_lr", "wd": "weight_decay", "weightdecay": "weight_decay",
    "weight_decay_end": "final_weight_decay", "end_weight_decay": "final_weight_decay",
    "final_wd": "final_weight_decay", "num_epochs": "epochs", "max_epochs": "epochs", "n_epochs": "epochs",
    "warmup": "warmup_steps", "warmup_iters": "warmup_steps", "ipe": "steps_per_epoch",
    "iterations_per_epoch": "steps_per_epoch", "grad_clip": "clip_grad", "clip_grad_norm": "clip_grad",
    "max_grad_norm": "clip_grad", "batchsize": "batch_size", "bs": "batch_size", "workers": "num_workers",
    "output_dir": "folder", "out_dir": "folder", "log_dir": "folder", "num_threads": "threads",
    "ema": "ema_momentum", "momentum": "ema_momentum", "accumulation_steps": "accum_steps",
    "grad_accum": "accum_steps", "arch": "name",
}


def _meant_key(key: str, keys: Sequence[str]) -> str | None:
    """The valid key that ``key`` names by a synonym or in another section, if there is one."""
    section, _, leaf = key.rpartition(".")
    leaf = leaf.lower().replace("-", "_")
    leaf = SYNONYMS.get(leaf, leaf)
    same_leaf = [k for k in keys if k.rpartition(".")[2] == leaf and k != key]
    in_section = [k for k in same_leaf if k.rpartition(".")[0] == section]
    if in_section:
        return in_section[0]
    if len(same_leaf) == 1:
        return same_leaf[0]
    near = difflib.get_close_matches(key, same_leaf, n=1, cutoff=0.0)
    return near[0] if near else None


def _unknown_key(key: str, root: type | None = None) -> str:
    root = Config if root is None else root
    keys = all_keys(root)
    meant = _meant_key(key, keys)
    suggestion = [meant] if meant else difflib.get_close_matches(key, keys, n=1, cutoff=0.6)
    where = "vjm/config.py" if root is Config else root.__module__.replace(".", "/") + ".py"
    hint = f"; did you mean '{suggestion[0]}'?" if suggestion else f"; see {where} for the valid keys"
    if root is Config and (moved := next((v for k, v in MOVED_KEYS.items() if key == k or key.startswith(k + ".")),
                                         None)):
        hint = f"; it moved to {moved}"
    return f"unknown key '{key}'{hint}"


_NOUNS = {int: ("an integer", "integers"), float: ("a number", "numbers"), bool: ("a boolean", "booleans"),
          str: ("a string", "strings"), dict: ("a mapping", "mappings"), type(None): ("null", "nulls")}


def _describe(tp: Any, plural: bool = False) -> str:
    """'an integer', 'a list of 2 numbers', 'a string or null': what a key of type ``tp`` accepts."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a, plural) for a in args)
    if origin is tuple and args and args[-1] is not Ellipsis:
        return f"a list of {len(args)} {_describe(args[0], plural=True)}"
    if origin in (list, tuple):
        return f"a list of {_describe(args[0], plural=True)}" if args else "a list"
    singular, many = _NOUNS.get(origin or tp, (f"a {tp}", f"{tp} values"))
    return many if plural else singular


class _BadValue(Exception):
    pass


def _coerce(value: Any, tp: Any) -> Any:
    """Return ``value`` converted to ``tp`` (lists -> tuples, ints -> floats, '1e-4' -> 1e-4) or raise _BadValue."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg)
            except _BadValue:
                pass
        raise _BadValue
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _BadValue
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _BadValue
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads '1e-4' (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                raise _BadValue from None
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
        raise _BadValue
    if tp is str:
        if isinstance(value, str):
            return value
        raise _BadValue
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise _BadValue
        if args and args[-1] is Ellipsis:
            return tuple(_coerce(v, args[0]) for v in value)
        if len(value) != len(args):
            raise _BadValue
        return tuple(_coerce(v, a) for v, a in zip(value, args))
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise _BadValue
        return [_coerce(v, args[0]) if args else v for v in value]
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise _BadValue
        return copy.deepcopy(dict(value))
    raise TypeError(f"config.py declares a type it cannot check: {tp!r}")


def _numbers(value: Any) -> list[float]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [value]
    if isinstance(value, (list, tuple)):
        return [v for v in value if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return []


def _check_field(key: str, raw: Any, tp: Any, meta: Mapping[str, Any]) -> tuple[Any, str | None]:
    """Coerce and check one value; returns (value, error message or None)."""
    try:
        value = _coerce(raw, tp)
    except _BadValue:
        return raw, f"'{key}' = {raw!r} is not {_describe(tp)}"
    if value is None:
        return value, None
    choices = meta.get("choices")
    if choices and value not in choices:
        near = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        return value, f"'{key}' = {value!r} is not one of {', '.join(repr(c) for c in choices)}{hint}"
    rng = meta.get("range")
    if rng is not None:
        for x in _numbers(value):
            if x not in rng:
                return value, f"'{key}' = {raw!r} is out of range; allowed: {rng}"
    if meta.get("ascending") and list(value) != sorted(value):
        return value, f"'{key}' = {raw!r} must be [low, high] with low <= high"
    check = meta.get("check")
    if check is not None and (problem := check(value)) is not None:
        return value, f"'{key}' {problem}"
    return value, None


def _build(cls: type, raw: Any, prefix: str, errors: list[str], root: type | None = None) -> Any:
    root = cls if root is None else root  # the top-level schema, for suggestions of misspelt keys
    section = prefix.rstrip(".") or "the config"
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        errors.append(f"'{section}' must be a mapping of keys, got {type(raw).__name__} {raw!r}")
        return cls()
    names = {f.name for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in names:
            errors.append(_unknown_key(f"{prefix}{key}", root))
    hints = _hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        if f.name not in raw:
            continue  # the dataclass default applies
        key, tp = f"{prefix}{f.name}", hints[f.name]
        if _is_section(tp):
            section = _section_class(f, tp, raw[f.name])
            if f.metadata.get("variants") and section is tp:
                errors.append(_unknown_variant(key, raw[f.name], f.metadata["variants"]()))
                continue
            values[f.name] = _build(section, raw[f.name], key + ".", errors, root)
        else:
            values[f.name], problem = _check_field(key, raw[f.name], tp, f.metadata)
            if problem:
                errors.append(problem)
    return cls(**values)


# --------------------------------------------------------------------------------------------
# Cross checks between keys
# --------------------------------------------------------------------------------------------


def _cross_check(cfg: Config) -> list[str]:
    d, m, o, t, lc = cfg.data, cfg.model, cfg.optim, cfg.train, cfg.launch
    errors = list(cfg.objective.cross_check(cfg))
    if cfg.objective.needs_masks and not cfg.masks:
        errors.append(f"objective {cfg.objective.name!r} needs at least one mask generator in 'masks', "
                      "e.g. [{kind: multiblock, num_blocks: 8, spatial_scale: [0.15, 0.15]}]")
    if not cfg.objective.needs_masks and cfg.masks:
        errors.append(f"objective {cfg.objective.name!r} uses no masks, but 'masks' lists {len(cfg.masks)}; "
                      "remove the 'masks' key")
    if d.crop_size % m.patch_size:
        lower = d.crop_size // m.patch_size * m.patch_size
        errors.append(f"'data.crop_size' = {d.crop_size} is not divisible by 'model.patch_size' = {m.patch_size}; "
                      f"use a multiple such as {lower or m.patch_size} or {lower + m.patch_size}")
    if d.frames_per_clip != 1 and d.frames_per_clip % m.tubelet_size:
        errors.append(f"'data.frames_per_clip' = {d.frames_per_clip} is not divisible by 'model.tubelet_size' = "
                      f"{m.tubelet_size} (only 1, an image, is exempt)")
    if d.dataset == "image" and d.frames_per_clip != 1:
        errors.append(f"'data.dataset' = 'image' needs 'data.frames_per_clip' = 1, got {d.frames_per_clip}")
    if d.dataset in ("video", "image") and not d.train:
        errors.append(f"'data.dataset' = {d.dataset!r} needs 'data.train': a list of file lists or folders")
    if d.weights is not None and len(d.weights) != len(d.train):
        errors.append(f"'data.weights' has {len(d.weights)} values but 'data.train' has {len(d.train)} sources; "
                      "give one weight per source, or null")
    if d.dataset == "toy" and d.short_video == "skip" and d.fps is None:
        span = (d.frames_per_clip - 1) * d.frame_step + 1
        if span > d.toy_frames:
            errors.append(f"a clip spans {span} frames ('data.frames_per_clip' = {d.frames_per_clip}, "
                          f"'data.frame_step' = {d.frame_step}) but toy videos have 'data.toy_frames' = "
                          f"{d.toy_frames}, and 'data.short_video' = 'skip' would skip them all")
    if o.start_lr > o.lr:
        errors.append(f"'optim.start_lr' = {o.start_lr} exceeds the peak 'optim.lr' = {o.lr}")
    if o.final_lr > o.lr:
        errors.append(f"'optim.final_lr' = {o.final_lr} exceeds the peak 'optim.lr' = {o.lr}")
    if t.steps_per_epoch is not None and o.encoder_frozen_steps >= t.epochs * t.steps_per_epoch:
        errors.append(f"'optim.encoder_frozen_steps' = {o.encoder_frozen_steps} leaves the encoder frozen for the "
                      f"whole run ({t.epochs} epochs x {t.steps_per_epoch} steps): lower it, or set it to 0")
    if t.steps_per_epoch is not None and o.warmup_steps > t.epochs * t.steps_per_epoch:
        errors.append(f"'optim.warmup_steps' = {o.warmup_steps} is longer than the whole run "
                      f"({t.epochs} epochs x {t.steps_per_epoch} steps)")
    if lc.gpus_per_node > 0 and lc.tasks_per_node != lc.gpus_per_node:
        errors.append(f"'launch.tasks_per_node' = {lc.tasks_per_node} must equal 'launch.gpus_per_node' = "
                      f"{lc.gpus_per_node}: training runs one process per GPU")
    return errors + _model_problems(m) + _mask_problems(cfg) + _regularizer_problems(cfg.regularizers)


# The registries are imported inside these checks: they import this module for its `param` machinery.
# Building masks and regularisers is cheap; what they refuse here would otherwise stop a run only
# after its model was built (or, under SLURM, after it waited in the queue).


def _model_problems(model: ModelConfig) -> list[str]:
    """An unregistered model name, or a key the named model does not take."""
    from vjm.models import list_models
    from vjm.models.factory import encoder_arguments

    registered = list_models()
    if model.name not in registered:
        near = difflib.get_close_matches(model.name, registered, n=1)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        return [f"'model.name' = {model.name!r} is not a registered model{hint} Registered: {', '.join(registered)}"]
    try:
        encoder_arguments(model)
    except ConfigError as e:
        return [str(e)]
    return []


def _mask_problems(cfg: Config) -> list[str]:
    """Each mask generator built on the token grid the data and model sections imply."""
    from vjm.masks import GridError, build_mask_generator, token_grid

    d, m = cfg.data, cfg.model
    try:
        grid = token_grid(d.frames_per_clip, d.crop_size, m.patch_size, m.tubelet_size)
    except ValueError:
        return []  # the cross checks already name the crop or frames that do not divide
    problems = []
    for i, spec in enumerate(cfg.masks if cfg.objective.needs_masks else []):
        params = {key: value for key, value in spec.items() if key != "kind"}
        try:
            build_mask_generator(spec.get("kind"), grid, where=f"masks[{i}]", **params)
        except GridError as e:  # values this grid cannot honour: say where the grid comes from
            problems.append(f"{e} (token grid (T', H', W') = {grid}, from 'data.frames_per_clip' / "
                            "'model.tubelet_size' and 'data.crop_size' / 'model.patch_size')")
        except ValueError as e:  # an unknown kind or parameter, or a value out of its range
            problems.append(str(e))
    return problems


def _regularizer_problems(specs: list[dict[str, Any]]) -> list[str]:
    from vjm.regularizers import build_regularizers

    try:
        build_regularizers(specs)
    except (TypeError, ValueError) as e:
        return [str(e)]
    return []


def validate_config(cfg: Config, where: str = "") -> None:
    """Run the cross checks between keys; raise ConfigError naming every problem."""
    _raise(_cross_check(cfg), where)


def _raise(errors: list[str], where: str) -> None:
    if errors:
        prefix = f"{where}: " if where else ""
        raise ConfigError("\n".join(prefix + e for e in errors))


# --------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------


def config_from_dict(d: Mapping[str, Any], where: str = "", cls: type = Config) -> Any:
    """Build and validate a Config from a nested dict; ``where`` (a file name) prefixes error messages.

    ``cls`` names another schema built from the same ``param`` fields (e.g. an evaluation's config);
    its cross checks are its ``cross_check()`` method, returning a list of problems, if it has one.
    """
    errors: list[str] = []
    cfg = _build(cls, d, "", errors)
    _raise(errors, where)
    if cls is Config:
        validate_config(cfg, where)
    elif callable(getattr(cfg, "cross_check", None)):
        _raise(cfg.cross_check(), where)
    return cfg


class DuplicateKeyError(yaml.YAMLError):
    """A mapping that names a key twice; ``problems`` says which keys, one line each."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


class _StrictLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key written twice in one mapping (plain YAML keeps the last
    silently, so the first value a person reads is not the one that runs)."""

    def get_single_data(self) -> Any:
        node = self.get_single_node()
        if node is None:
            return None
        problems = list(_duplicate_keys(node))
        if problems:
            raise DuplicateKeyError(problems)
        return self.construct_document(node)


def _duplicate_keys(node: yaml.Node, prefix: str = "", seen: set[int] | None = None) -> typing.Iterator[str]:
    """A message for each key given twice in a mapping under ``node``, named by its dotted key."""
    seen = set() if seen is None else seen
    if id(node) in seen:  # an alias repeats a node already walked
        return
    seen.add(id(node))
    if isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            yield from _duplicate_keys(item, f"{prefix}{i}.", seen)
    elif isinstance(node, yaml.MappingNode):
        first_line: dict[tuple[str, str], int] = {}
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else "?"
            if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                line = key.start_mark.line + 1
                if (key.tag, key.value) in first_line:
                    yield (f"key '{prefix}{name}' is given twice, at lines {first_line[key.tag, key.value]} and "
                           f"{line}; YAML would keep only the last: remove one")
                else:
                    first_line[key.tag, key.value] = line
            yield from _duplicate_keys(value, f"{prefix}{name}.", seen)


def _load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_StrictLoader)


def _parse_override(override: str) -> tuple[str, Any]:
    key, sep, text = override.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {override!r}: expected key=value, e.g. optim.lr=1e-3 or masks.0.num_blocks=4")
    try:
        value = _load_yaml(text) if text.strip() else None
    except yaml.YAMLError as e:
        raise ConfigError(f"--set {override!r}: the value is not valid YAML ({e})") from None
    return key, value


def _field_default(f: dataclasses.Field) -> Any:
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return copy.deepcopy(f.default)


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str], cls: type = Config) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides to a raw config dict (a deep copy is returned).

    Keys are checked against the schema as they are applied, so a misspelt override is reported
    as such. Inside list- or mapping-valued keys (e.g. ``masks``), integer parts index lists
    (``masks.0.num_blocks=4``; the index one past the end appends) and other parts name mapping keys.
    ``cls`` is the schema (Config unless another is given).
    """
    root = cls
    raw = copy.deepcopy(dict(raw))
    for override in overrides:
        key, value = _parse_override(override)
        parts = key.split(".")
        node: Any = raw
        cls: type | None = root  # None once we are inside a free-form (list/dict) value
        for i, part in enumerate(parts):
            here = ".".join(parts[: i + 1])
            last = i == len(parts) - 1
            if cls is not None:
                fields = {f.name: f for f in dataclasses.fields(cls)}
                if part not in fields:
                    raise ConfigError(f"--set {override!r}: {_unknown_key(here, root)}")
                if last:
                    node[part] = value
                    break
                tp = _hints(cls)[part]
                if node.get(part) is None:
                    default_from = fields[part].metadata.get("default_from")
                    if _is_section(tp):
                        node[part] = {}
                    elif default_from is not None:
                        node[part] = copy.deepcopy(list(default_from(raw)))
                    else:
                        node[part] = _field_default(fields[part])
                node, cls = node[part], (_section_class(fields[part], tp, node[part]) if _is_section(tp) else None)
                continue
            if isinstance(node, list):
                if not part.isdigit() or int(part) > len(node):
                    raise ConfigError(f"--set {override!r}: '{here}' needs a list index from 0 to {len(node)} "
                                      f"('{'.'.join(parts[:i])}' has {len(node)} items)")
                index = int(part)
                if index == len(node):
                    node.append(value if last else {})
                elif last:
                    node[index] = value
                node = node[index]
            elif isinstance(node, dict):
                if last:
                    node[part] = value
                else:
                    node = node.setdefault(part, {})
            else:
                raise ConfigError(f"--set {override!r}: '{'.'.join(parts[:i])}' is {node!r}, not a list or "
                                  f"mapping, so it has no '{part}'")
    return raw


def load_config(path: str | os.PathLike, overrides: Sequence[str] = (), cls: type = Config, *,
                check_data: bool = True) -> Any:
    """Read a YAML config, apply ``key=value`` overrides, fill derived defaults, validate.

    ``cls`` is the schema (Config unless another is given, see config_from_dict). ``check_data``
    also reads the data section's file lists and folders, so that a missing or unreadable one is an
    error now rather than after the model is built; callers that use only the model section (a
    random-init control, a benchmark on synthetic clips) turn it off.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path} (give a YAML file such as configs/vjepa_tiny.yaml)")
    try:
        raw = _load_yaml(_read_text(path))
    except DuplicateKeyError as e:
        _raise(e.problems, str(path))
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if raw is None:
        raise ConfigError(f"{path}: the file is empty (or holds only comments), so every key would silently take "
                          "its default; write the keys you mean (configs/ has complete examples), or '{}' to ask "
                          "for all defaults")
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(raw).__name__}")
    # File keys are checked first so that their errors name the file, then the overrides.
    errors: list[str] = []
    _build(cls, raw, "", errors)
    _raise(errors, str(path))
    where = f"{path} with --set {' '.join(overrides)}" if overrides else str(path)
    raw = apply_overrides(raw, overrides, cls)
    if "run" in {f.name for f in dataclasses.fields(cls)}:  # the run is named after its file
        run = raw.get("run")
        if isinstance(run, dict) and run.get("name") is None:
            run["name"] = path.stem
        elif run is None:
            raw["run"] = {"name": path.stem}
    cfg = config_from_dict(raw, where, cls)
    if check_data:
        _raise(_data_source_problems(cfg), where)
    return cfg


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text; a config is a YAML file such as configs/vjepa_tiny.yaml") from None


def _data_source_problems(cfg: Any) -> list[str]:
    """Each file list or folder of the data section that is missing or unreadable (video and image data)."""
    from vjm.data.sources import check_source  # the data package imports torch; keep it out of module import

    data = getattr(cfg, "data", None)
    if not isinstance(data, DataConfig) or data.dataset not in ("video", "image"):
        return []
    return [f"'data.{split}' item {i}: {problem}" for split in ("train", "val")
            for i, source in enumerate(getattr(data, split)) if (problem := check_source(source)) is not None]


class _Dumper(yaml.SafeDumper):
    """Block-style mappings; lists of scalars on one line ([0.3, 1.0]), as people write them."""


def _represent_list(dumper: yaml.SafeDumper, data: list) -> yaml.Node:
    flow = all(not isinstance(x, (list, dict)) for x in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_Dumper.add_representer(list, _represent_list)


def config_to_yaml(cfg: Config) -> str:
    """The resolved config as YAML text, sections in declaration order."""
    return yaml.dump(cfg.to_dict(), Dumper=_Dumper, sort_keys=False, default_flow_style=False)


def save_config(cfg: Config, path: str | os.PathLike) -> Path:
    """Write the resolved config atomically; load_config(path) gives back an equal Config."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"# resolved config of run '{cfg.run.name}', written by vjm\n" + config_to_yaml(cfg))
    os.replace(tmp, path)
    return path
