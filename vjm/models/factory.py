"""The encoder a config's ``model`` section describes."""

from __future__ import annotations

import dataclasses

import torch.nn as nn

from vjm.config import ConfigError, ModelConfig

from .registry import build, model_arguments

# Config keys whose constructor argument has another name.
ARGUMENT_OF_KEY = {"bidirectional_merge": "merge"}


def encoder_arguments(model: ModelConfig) -> dict:
    """The constructor arguments of ``model.name`` that the section sets. A key the model does not
    take is an error unless it keeps its default (ViT has no scan backend, say)."""
    accepted = model_arguments(model.name)
    defaults = ModelConfig()
    arguments = {}
    for f in dataclasses.fields(model):
        value = getattr(model, f.name)
        if f.name == "name" or value is None:
            continue
        argument = ARGUMENT_OF_KEY.get(f.name, f.name)
        if argument in accepted:
            arguments[argument] = value
        elif value != getattr(defaults, f.name):
            raise ConfigError(f"'model.{f.name}' = {value!r} does not apply to model {model.name!r}; "
                              f"leave it at its default ({getattr(defaults, f.name)!r})")
    return arguments


def build_encoder(model: ModelConfig) -> nn.Module:
    """Build the encoder (context and target encoders of an objective share it)."""
    return build(model.name, **encoder_arguments(model))
