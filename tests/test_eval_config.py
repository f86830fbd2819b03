"""The evaluation config's data section is pre-training's, extended: one declaration of each key."""

from __future__ import annotations

import dataclasses

import pytest

from vjm.config import ConfigError, DataConfig
from vjm.eval.config import EvalDataConfig, eval_config_from_dict

EVAL_ONLY_KEYS = {"num_classes", "toy_seed", "num_segments", "num_views", "augment", "holdout_fraction",
                  "label_fraction"}


def fields(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}


def test_data_keys_are_pretrainings_plus_the_evaluations_own():
    assert issubclass(EvalDataConfig, DataConfig)
    pretraining, evaluation = fields(DataConfig), fields(EvalDataConfig)
    assert evaluation.keys() - pretraining.keys() == EVAL_ONLY_KEYS
    # Redeclared keys keep pre-training's type and checks; only defaults (and a help or choices) change.
    for name, field in pretraining.items():
        assert evaluation[name].type == field.type, name
        assert evaluation[name].metadata["range"] == field.metadata["range"], name
    assert set(pretraining["dataset"].metadata["choices"]) < set(evaluation["dataset"].metadata["choices"])


def test_evaluation_defaults_follow_the_probe_protocol():
    d = EvalDataConfig()
    assert (d.dataset, d.random_resize_scale, d.randaugment, d.random_erasing, d.batch_size) == (
        "video", (0.08, 1.0), True, 0.25, 16)
    assert d.random_resize_aspect == DataConfig().random_resize_aspect  # shared where they agree


def test_pretraining_keys_that_do_not_apply_are_errors():
    with pytest.raises(ConfigError, match="'data.num_clips' = 2 is pre-training's.*'data.num_segments'"):
        eval_config_from_dict({"data": {"dataset": "toy", "augment": False, "num_clips": 2}})
    with pytest.raises(ConfigError, match="'data.weights' mixes pre-training sources"):
        eval_config_from_dict({"data": {"dataset": "video", "train": ["a"], "val": ["b"], "weights": [1.0]}})
    with pytest.raises(ConfigError, match="unknown key 'data.num_segmnets'; did you mean 'data.num_segments'"):
        eval_config_from_dict({"data": {"num_segmnets": 2}})
    unpinned = eval_config_from_dict({"data": {"dataset": "toy", "augment": False, "pin_memory": False}})
    assert not unpinned.data.pin_memory  # an inherited key that the probe's loaders honour
