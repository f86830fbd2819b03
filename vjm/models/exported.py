"""An encoder's weights as one safetensors file, with what is needed to build it again.

The format timm and the Hugging Face tools read: tensors by name, and string metadata. vjm's
metadata names the model (``model``: the config's model section as JSON, so sizes and overrides
come back) and where the weights came from (objective, encoder, step, checkpoint):

    save_exported(encoder, cfg.model, "encoder.safetensors", objective="vjepa", encoder="target_encoder", step=128)
    encoder, meta = load_exported("encoder.safetensors")          # built as saved, weights loaded
    encoder = build("videomamba_tiny", weights="encoder.safetensors")   # refused if the file is another model
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch.nn as nn

from vjm.config import ConfigError, ModelConfig

from .weights import load_weights

__all__ = ["EXPORT_FORMAT", "exported_model", "is_exported", "load_exported", "load_exported_weights", "read_exported",
           "save_exported"]

EXPORT_FORMAT = "vjm-encoder-v1"


def save_exported(module: nn.Module, model: ModelConfig, path: str | os.PathLike, **provenance: Any) -> Path:
    """Write ``module``'s weights and ``model`` (its config section) to ``path``; ``provenance``
    (objective, encoder, step, checkpoint, ...) goes into the metadata as text."""
    from safetensors.torch import save

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Contiguous copies: safetensors refuses views and tensors that share memory.
    tensors = {name: tensor.detach().cpu().contiguous().clone() for name, tensor in module.state_dict().items()}
    metadata = {"format": EXPORT_FORMAT, "model": json.dumps(dataclasses.asdict(model)),
                **{key: str(value) for key, value in provenance.items() if value is not None}}
    # Written by us rather than save_file, which creates the file readable by its owner only: a file
    # to share gets the usual permissions. A temporary file renamed over the target: never half written.
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(save(tensors, metadata=metadata))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def is_exported(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a safetensors file (an 8-byte header length, then a JSON header)."""
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError:
        return False
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < 100_000_000


def exported_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The metadata of an exported encoder, read without its tensors; ValueError naming the file when
    it is not one."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"exported encoder {path} does not exist; write one with python -m vjm.export")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError) as e:
        raise ValueError(f"{path} could not be read as safetensors ({e})") from None
    if metadata.get("format") != EXPORT_FORMAT or "model" not in metadata:
        raise ValueError(f"{path} is a safetensors file but not a vjm encoder (metadata format "
                         f"{metadata.get('format')!r}, expected {EXPORT_FORMAT!r}); write one with python -m vjm.export")
    return metadata


def read_exported(path: str | os.PathLike) -> tuple[dict[str, Any], ModelConfig, dict[str, str]]:
    """(tensors, the model section, the metadata) of an exported encoder; ValueError naming the file
    when it is not one."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    metadata = exported_metadata(path)
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise ValueError(f"{path} could not be read as safetensors ({e})") from None
    try:
        model = exported_model(metadata)
    except (TypeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: its model metadata cannot be read by this vjm ({e})") from None
    return tensors, model, metadata


def exported_model(metadata: Mapping[str, str]) -> ModelConfig:
    """The model section an exported file's metadata holds."""
    return ModelConfig(**json.loads(metadata["model"]))


def load_exported_weights(module: nn.Module, path: str | os.PathLike, model: ModelConfig) -> dict[str, str]:
    """Load an exported encoder's weights into ``module`` (built as ``model`` says); a ValueError of one
    line naming the model settings that differ when they do not fit. Returns the file's metadata."""
    tensors, saved, metadata = read_exported(path)
    _load_tensors(module, tensors, saved, path, model)
    return metadata


def _load_tensors(module: nn.Module, tensors: dict[str, Any], saved: ModelConfig, path: str | os.PathLike,
                  model: ModelConfig) -> None:
    load_weights(module, tensors, source=str(path), model=model, saved_model=dataclasses.asdict(saved),
                 remedy=f"Build it as saved: vjm.models.load_exported({str(path)!r})")


def load_exported(path: str | os.PathLike) -> tuple[nn.Module, dict[str, str]]:
    """The encoder of an exported file, built from its own model section, weights loaded; and its metadata
    (the file is read once)."""
    from .factory import build_encoder

    tensors, model, metadata = read_exported(path)
    try:
        encoder = build_encoder(model)
    except (ConfigError, ValueError, TypeError) as e:
        raise ValueError(f"{path}: its model ({model.name}) cannot be built by this vjm: {e}") from None
    _load_tensors(encoder, tensors, model, path, model)
    return encoder, metadata


def model_config_of(name: str, overrides: Mapping[str, Any]) -> ModelConfig:
    """The model section that ``build(name, **overrides)`` corresponds to, to compare with a file's."""
    from .factory import ARGUMENT_OF_KEY

    key_of = {argument: key for key, argument in ARGUMENT_OF_KEY.items()}
    fields = {f.name for f in dataclasses.fields(ModelConfig)}
    known = {key_of.get(k, k): v for k, v in overrides.items() if key_of.get(k, k) in fields}
    return ModelConfig(name=name, **known)
