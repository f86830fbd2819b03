"""vjm.config: loading, saving, overrides and every kind of error a config can have."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import pytest
import yaml

from vjm.config import (
    objective_sections,
    Config,
    ConfigError,
    all_keys,
    apply_overrides,
    config_from_dict,
    load_config,
    save_config,
)

MAIN_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "vjepa_tiny.yaml"


def write_yaml(tmp_path: Path, data: dict | str, name: str = "exp.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def set_key(d: dict, dotted: str, value) -> dict:
    """d with d[a][b] = value for dotted 'a.b' (creating sections)."""
    *sections, last = dotted.split(".")
    node = d
    for s in sections:
        node = node.setdefault(s, {})
    node[last] = value
    return d


# ------------------------------------------------------------------------------------------ loading


def test_main_config_loads_with_derived_defaults():
    cfg = load_config(MAIN_CONFIG)
    assert cfg.run.name == "vjepa_tiny"
    assert cfg.run.folder == "runs/vjepa_tiny"
    assert cfg.run_dir == Path("runs/vjepa_tiny")
    assert cfg.launch.slurm_folder == "runs/vjepa_tiny/slurm"
    assert (cfg.data.dataset, cfg.data.crop_size, cfg.data.frames_per_clip) == ("toy", 64, 8)
    assert cfg.model.name == "videomamba_tiny"
    assert cfg.optim.lr == pytest.approx(6.25e-4)  # written '6.25e-4', which YAML 1.1 reads as a string
    assert cfg.objective.name == "vjepa" and type(cfg.objective).__name__ == "VJEPAConfig"
    assert isinstance(cfg.objective.ema_momentum, tuple) and cfg.objective.ema_momentum == (0.99, 1.0)
    assert (cfg.objective.predictor.width, cfg.objective.predictor.depth) == (96, 4)
    assert cfg.regularizers == [{"kind": "vicreg", "apply_to": "context", "var_weight": 1.0, "cov_weight": 0.04}]


def test_defaults_are_the_vjepa_mask_pair_and_valid():
    cfg = config_from_dict({})
    assert cfg == Config()
    assert [(m["kind"], m["num_blocks"], m["spatial_scale"]) for m in cfg.masks] == [
        ("multiblock", 8, [0.15, 0.15]), ("multiblock", 2, [0.7, 0.7])]
    # the default list is copied, never shared between configs
    cfg.masks[0]["num_blocks"] = 1
    assert Config().masks[0]["num_blocks"] == 8


def test_round_trip_through_save_and_load(tmp_path):
    cfg = load_config(MAIN_CONFIG, ["masks.0.num_blocks=4", "optim.betas=[0.8, 0.95]", "data.fps=7.5",
                                    "launch.partition=gpu", "run.name=rt"])
    path = save_config(cfg, tmp_path / "run" / "config.yaml")
    assert path.is_file() and not path.with_name("config.yaml.tmp").exists()
    again = load_config(path)
    assert again == cfg
    assert again.run.name == "rt"  # the saved name wins over the file stem 'config'
    assert config_from_dict(cfg.to_dict()) == cfg
    # to_dict is plain data that safe YAML can write
    yaml.safe_dump(cfg.to_dict())


def test_explicit_folders_are_kept(tmp_path):
    path = write_yaml(tmp_path, {"run": {"folder": "/scratch/a"}, "launch": {"slurm_folder": "/logs/s"}})
    cfg = load_config(path)
    assert (cfg.run.name, cfg.run.folder, cfg.launch.slurm_folder) == ("exp", "/scratch/a", "/logs/s")


def test_numbers_are_coerced(tmp_path):
    path = write_yaml(tmp_path, "optim:\n  lr: 1e-3\n  final_lr: 0\n  betas: [0.9, 0.99]\n")
    cfg = load_config(path)
    assert cfg.optim.lr == 1e-3 and isinstance(cfg.optim.lr, float)
    assert cfg.optim.final_lr == 0.0 and isinstance(cfg.optim.final_lr, float)
    assert cfg.optim.betas == (0.9, 0.99)


def test_missing_file_and_bad_top_level(tmp_path):
    with pytest.raises(FileNotFoundError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(write_yaml(tmp_path, "- a\n- b\n"))
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write_yaml(tmp_path, "optim: {lr: [\n"))
    with pytest.raises(ConfigError, match="'optim' must be a mapping"):
        load_config(write_yaml(tmp_path, {"optim": [1, 2]}))


# ------------------------------------------------------------------------------------ unknown keys


def test_unknown_key_names_file_key_and_suggestion(tmp_path):
    path = write_yaml(tmp_path, {"optim": {"warmup_step": 10}})
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert str(e.value) == f"{path}: unknown key 'optim.warmup_step'; did you mean 'optim.warmup_steps'?"


def test_unknown_section_and_hopeless_key(tmp_path):
    with pytest.raises(ConfigError, match="unknown key 'optimizer'; did you mean 'optim'"):
        load_config(write_yaml(tmp_path, {"optimizer": {"lr": 1e-3}}))
    with pytest.raises(ConfigError, match="unknown key 'data.qqqqqq'; see vjm/config.py"):
        load_config(write_yaml(tmp_path, {"data": {"qqqqqq": 1}}))


def test_all_errors_reported_at_once(tmp_path):
    path = write_yaml(tmp_path, {"data": {"batch_sise": 4, "crop_size": -1}, "model": {"tubelet": 2}})
    with pytest.raises(ConfigError) as e:
        load_config(path)
    lines = str(e.value).splitlines()
    assert len(lines) == 3 and all(line.startswith(f"{path}: ") for line in lines)
    assert any("'data.batch_sise'; did you mean 'data.batch_size'" in line for line in lines)
    assert any("'model.tubelet'; did you mean 'model.tubelet_size'" in line for line in lines)
    assert any("'data.crop_size' = -1 is out of range" in line for line in lines)


def test_every_declared_key_has_help():
    def undocumented(cls, prefix=""):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if dataclasses.is_dataclass(hints[f.name]):  # a section: its keys are checked on their own
                continue
            if not f.metadata.get("help"):
                yield prefix + f.name

    cfg = Config()
    sections = {name: type(getattr(cfg, name)) for name in ("run", "data", "model", "optim", "train", "launch")}
    sections.update({f"objective[{name}]": cls for name, cls in objective_sections().items()})
    sections["objective[vjepa].predictor"] = type(cfg.objective.predictor)
    missing = [key for name, cls in sections.items() for key in undocumented(cls, name + ".")]
    assert not missing and list(undocumented(Config)) == []
    assert {f.name for f in dataclasses.fields(Config)} == {
        "run", "data", "model", "objective", "masks", "regularizers", "optim", "train", "launch"}
    assert {"objective.loss", "objective.predictor.depth", "objective.num_classes"} <= set(all_keys())


# ------------------------------------------------------------------------------- types and ranges


@pytest.mark.parametrize("key, value, message", [
    ("data.batch_size", "eight", "'data.batch_size' = 'eight' is not an integer"),
    ("data.batch_size", 8.5, "is not an integer"),
    ("data.hflip", "sometimes", "'data.hflip' = 'sometimes' is not a boolean"),
    ("optim.lr", True, "'optim.lr' = True is not a number"),
    ("optim.lr", ".inf", "is not a number"),
    ("optim.betas", [0.9], "'optim.betas' = [0.9] is not a list of 2 numbers"),
    ("data.train", "videos.csv", "'data.train' = 'videos.csv' is not a list of strings"),
    ("data.weights", "heavy", "is not a list of numbers or null"),
    ("run.name", 12, "'run.name' = 12 is not a string or null"),
    ("masks", ["multiblock"], "'masks' = ['multiblock'] is not a list of mappings"),
])
def test_wrong_types(key, value, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        config_from_dict(set_key({}, key, value), "x.yaml")


@pytest.mark.parametrize("key, value, allowed", [
    ("data.batch_size", 0, ">= 1"),
    ("data.num_workers", -1, ">= 0"),
    ("data.fps", 0, "> 0"),
    ("data.random_erasing", 1.5, "[0, 1]"),
    ("model.drop_path", 1.0, "[0, 1)"),
    ("objective.ema_momentum", [0.99, 1.01], "[0, 1]"),
    ("data.random_resize_scale", [0.0, 1.0], "(0, 1]"),
    ("data.weights", [1.0, -2.0], "> 0"),
    ("run.seed", 2**32, "[0, 4294967295]"),
])
def test_out_of_range(key, value, allowed):
    d = set_key({}, key, value)
    if key == "data.weights":
        d["data"]["train"] = ["a.csv", "b.csv"]
        d["data"]["dataset"] = "video"
    with pytest.raises(ConfigError) as e:
        config_from_dict(d, "x.yaml")
    assert f"x.yaml: '{key}' = {value!r} is out of range; allowed: {allowed}" == str(e.value)


@pytest.mark.parametrize("key, value, choices", [
    ("data.dataset", "videos", "'video', 'image', 'toy'; did you mean 'video'?"),
    ("model.scan_backend", "cuda", "'auto', 'torch', 'mamba_ssm', 'triton'"),
    ("objective.loss", "l3", "'l1', 'l2'"),
    ("train.dtype", "fp16", "'auto', 'bf16', 'fp32'"),
])
def test_choices(key, value, choices):
    with pytest.raises(ConfigError) as e:
        config_from_dict(set_key({}, key, value), "x.yaml")
    assert str(e.value).startswith(f"x.yaml: '{key}' = {value!r} is not one of {choices}")


def test_pairs_must_be_ascending():
    with pytest.raises(ConfigError, match=r"'data.random_resize_aspect' = \[1.5, 0.5\] must be \[low, high\]"):
        config_from_dict({"data": {"random_resize_aspect": [1.5, 0.5]}})


@pytest.mark.parametrize("masks, message", [
    ([], "objective 'vjepa' needs at least one mask generator"),
    ([{"num_blocks": 8}], "'masks' item 0 needs a 'kind' string"),
    ([{"kind": "tube"}, {"kind": 3}], "'masks' item 1 needs a 'kind' string"),
])
def test_mask_specs(masks, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict({"masks": masks})


@pytest.mark.parametrize("override, message", [
    ("predictor.depth=2", "unknown key 'predictor'; it moved to objective.predictor"),
    ("optim.ema_momentum=[0.9, 1.0]", "unknown key 'optim.ema_momentum'; it moved to objective.ema_momentum"),
    ("objective.context_var_weight=1.0", "it moved to regularizers: [{kind: vicreg"),
    ("objective.los=l2", "unknown key 'objective.los'; did you mean 'objective.loss'?"),
    ("objective.predictor.dpth=2", "did you mean 'objective.predictor.depth'?"),
])
def test_objective_keys_are_the_objectives_own(override, message):
    with pytest.raises(ConfigError) as e:
        load_config(MAIN_CONFIG, [override])
    assert message in str(e.value)


def test_unknown_objective_name_is_named_with_a_suggestion():
    with pytest.raises(ConfigError, match="'objective.name' = 'vjeppa' is not one of .*'vjepa'; did you mean 'vjepa'"):
        config_from_dict({"objective": {"name": "vjeppa"}})


def test_regularizer_specs_need_a_kind():
    with pytest.raises(ConfigError, match="'regularizers' item 0 needs a 'kind' string"):
        config_from_dict({"regularizers": [{"var_weight": 1.0}]})


@pytest.mark.parametrize("mask, message", [
    ({"kind": "multiblock", "num_blocks": 0}, "masks[0]: kind 'multiblock': parameter 'num_blocks' must be an "
                                              "integer >= 1, got 0"),
    ({"kind": "multiblock", "spatial_scale": [0.7, 1.5]}, "parameter 'spatial_scale' must be a number or a pair"),
    ({"kind": "multiblock", "temporal_scale": 0.0}, "parameter 'temporal_scale' must be"),
    ({"kind": "multiblock", "aspect_ratio": [1.5, 0.75]}, "parameter 'aspect_ratio' must be a number or a pair "
                                                          "[min, max] with 0 < min <= max, got [1.5, 0.75]"),
    ({"kind": "multiblock", "spatial_scale": 1.0, "aspect_ratio": 1.0},
     "every block covers the whole token grid (4, 4, 4)"),
    ({"kind": "tube", "ratio": 1.0}, "masks[0]: kind 'tube': parameter 'ratio' must be a number in (0, 1)"),
    ({"kind": "clip_row", "ratio": 0.1}, "ratio=0.1 of 4 rows masks 0, which leaves no target"),
    ({"kind": "tube", "anything": [1, 2]}, "masks[0]: unknown parameter 'anything' for kind 'tube'"),
    ({"kind": "multiblok"}, "masks[0]: unknown mask kind 'multiblok'; did you mean 'multiblock'?"),
])
def test_mask_parameters_are_checked_on_the_configs_token_grid(mask, message):
    # 8 frames / tubelet 2, crop 64 / patch 16: a (4, 4, 4) grid, on which some values cannot work.
    d = {"data": {"frames_per_clip": 8, "crop_size": 64}, "masks": [mask]}
    with pytest.raises(ConfigError) as e:
        config_from_dict(d, "x.yaml")
    assert str(e.value).startswith("x.yaml: masks[0]: ") and message in str(e.value)
    # A value that only this grid refuses says where the grid comes from.
    assert ("(token grid (T', H', W') = (4, 4, 4), from 'data.frames_per_clip'" in str(e.value)) == (
        "grid" in message or "rows" in message)


def test_every_mask_generator_with_a_problem_is_named():
    with pytest.raises(ConfigError) as e:
        config_from_dict({"masks": [{"kind": "multiblock", "num_blocks": 0}, {"kind": "tube"},
                                    {"kind": "tube", "ratio": 2}]})
    assert [line.split(":")[0] for line in str(e.value).splitlines()] == ["masks[0]", "masks[2]"]


def test_unknown_model_name_lists_the_registered_ones_and_the_nearest():
    with pytest.raises(ConfigError) as e:
        config_from_dict({"model": {"name": "videomamba_tinny"}}, "x.yaml")
    assert str(e.value).startswith("x.yaml: 'model.name' = 'videomamba_tinny' is not a registered model; "
                                   "did you mean 'videomamba_tiny'? Registered: ")
    assert "videomamba_small" in str(e.value) and "vit_tiny" in str(e.value)


def test_model_key_the_named_model_does_not_take_is_refused():
    with pytest.raises(ConfigError, match="'model.scan_backend' = 'torch' does not apply to model 'vit_tiny'"):
        config_from_dict({"model": {"name": "vit_tiny", "scan_backend": "torch"}})


def test_unknown_regularizer_kind_is_refused_with_a_suggestion():
    with pytest.raises(ConfigError, match=r"regularizers\[0\]: unknown regulariser kind 'vicrg'; did you mean"):
        config_from_dict({"regularizers": [{"kind": "vicrg"}]})


def test_registry_errors_come_from_load_config_before_any_model_is_built(monkeypatch):
    import vjm.models.factory as factory

    def no_building(*args, **kwargs):
        raise AssertionError("a model was built")

    monkeypatch.setattr(factory, "build", no_building)
    for override in ("model.name=videomamba_tinny", "masks.0.num_blocks=0", "regularizers.0.kind=vicrg"):
        with pytest.raises(ConfigError):
            load_config(MAIN_CONFIG, [override])


# ------------------------------------------------------------------------------- the YAML itself


@pytest.mark.parametrize("text", ["", "# only a comment\n", "\n\n---\n"])
def test_an_empty_file_is_an_error(tmp_path, text):
    path = write_yaml(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert str(e.value).startswith(f"{path}: the file is empty (or holds only comments)")


def test_an_explicit_empty_mapping_asks_for_all_defaults(tmp_path):
    assert load_config(write_yaml(tmp_path, "{}\n")).optim == Config().optim


def test_duplicate_keys_name_the_key_and_both_lines(tmp_path):
    path = write_yaml(tmp_path, "optim:\n  lr: 1.0e-3\n  warmup_steps: 5\n  lr: 1.0e-4\n"
                                "masks:\n  - {kind: tube, ratio: 0.5, ratio: 0.9}\n"
                                "train: {epochs: 2}\ntrain: {epochs: 3}\n")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert str(e.value).splitlines() == [
        f"{path}: key 'optim.lr' is given twice, at lines 2 and 4; YAML would keep only the last: remove one",
        f"{path}: key 'masks.0.ratio' is given twice, at lines 6 and 6; YAML would keep only the last: remove one",
        f"{path}: key 'train' is given twice, at lines 7 and 8; YAML would keep only the last: remove one",
    ]


def test_yaml_merge_keys_and_repeated_names_in_separate_mappings_are_not_duplicates(tmp_path):
    path = write_yaml(tmp_path, "masks:\n  - &m {kind: multiblock, num_blocks: 4}\n  - {<<: *m, num_blocks: 2}\n"
                                "optim: {lr: 1.0e-3}\ntrain: {epochs: 3}\n")
    assert [m["num_blocks"] for m in load_config(path).masks] == [4, 2]


def test_duplicate_keys_in_an_override_value_are_an_error():
    with pytest.raises(ConfigError, match="key 'ratio' is given twice"):
        load_config(MAIN_CONFIG, ["masks.0={kind: tube, ratio: 0.5, ratio: 0.9}"])


def test_a_binary_config_file_is_named(tmp_path):
    path = tmp_path / "clip.yaml"
    path.write_bytes(b"\xff\xd8\xff\xe0 not yaml")
    with pytest.raises(ConfigError, match=f"{path}: not UTF-8 text"):
        load_config(path)


# --------------------------------------------------------------------------------- data sources


def video_config(tmp_path: Path, *sources: str) -> Path:
    return write_yaml(tmp_path, {"data": {"dataset": "video", "train": list(sources)}})


def test_data_lists_are_read_at_load_time(tmp_path):
    (tmp_path / "ok.csv").write_text("# comment\n\na.mp4 0\nb c.mp4,1\n")
    (tmp_path / "clip.csv").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)))  # an mp4 given as a list
    (tmp_path / "latin1.csv").write_bytes(b"a.mp4 0\nb.mp4 1\nd\xe9j\xe0 vu.mp4 2\n")  # no NUL: caught by line
    (tmp_path / "bad_line.csv").write_text("a.mp4 0\nb.mp4 cat\n")
    (tmp_path / "empty.csv").write_text("# nothing yet\n")
    (tmp_path / "flat").mkdir()
    sources = ["ok.csv", "missing.csv", "clip.csv", "latin1.csv", "bad_line.csv", "empty.csv", "flat"]
    path = video_config(tmp_path, *(str(tmp_path / s) for s in sources))
    with pytest.raises(ConfigError) as e:
        load_config(path)
    lines = str(e.value).splitlines()
    assert all(line.startswith(f"{path}: 'data.train' item ") for line in lines)
    assert [line.split("'data.train' item ")[1].split(":")[0] for line in lines] == ["1", "2", "3", "4", "5", "6"]
    assert f"File list '{tmp_path / 'missing.csv'}' does not exist" in lines[0]
    assert f"{tmp_path / 'clip.csv'}:1: not UTF-8 text" in lines[1] and "binary file" in lines[1]
    assert f"{tmp_path / 'latin1.csv'}:3: not UTF-8 text" in lines[2]
    assert f"{tmp_path / 'bad_line.csv'}:2: expected 'path label' with an integer label" in lines[3]
    assert "holds no samples" in lines[4]
    assert f"folder '{tmp_path / 'flat'}' has no class sub-folders" in lines[5]


def test_relative_list_paths_name_the_folder_they_are_read_from(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=f"File list 'lists/train.csv' \\(relative to {tmp_path}\\) does not exist"):
        load_config(video_config(tmp_path, "lists/train.csv"))


def test_data_checks_can_be_left_to_callers_that_need_only_the_model(tmp_path):
    cfg = load_config(video_config(tmp_path, str(tmp_path / "missing.csv")), check_data=False)
    assert cfg.data.train == [str(tmp_path / "missing.csv")]


# ------------------------------------------------------------------------------------- overrides


def test_overrides_nested_list_index_and_types(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("a.csv", "b.csv"):
        (tmp_path / name).write_text("v.mp4 0\n")
    cfg = load_config(MAIN_CONFIG, [
        "optim.lr=1e-3",             # YAML 1.1 string -> float
        "data.batch_size=16",
        "data.hflip=false",
        "masks.0.num_blocks=4",      # list item by index
        "masks.1.spatial_scale=[0.5, 0.6]",
        "data.train=[a.csv, b.csv]",
        "data.weights=[1, 3]",
        "data.dataset=video",
        "launch.qos=high",
    ])
    assert cfg.optim.lr == 1e-3
    assert cfg.data.batch_size == 16 and cfg.data.hflip is False
    assert cfg.masks[0]["num_blocks"] == 4 and cfg.masks[0]["spatial_scale"] == [0.15, 0.15]
    assert cfg.masks[1]["spatial_scale"] == [0.5, 0.6]
    assert cfg.data.train == ["a.csv", "b.csv"] and cfg.data.weights == [1.0, 3.0]
    assert cfg.launch.qos == "high"


def test_overrides_reach_defaults_not_in_the_file(tmp_path):
    path = write_yaml(tmp_path, {"optim": {"lr": 1e-3}})
    cfg = load_config(path, ["masks.1.num_blocks=3", "objective.predictor.depth=2",
                             "masks.2={kind: tube, ratio: 0.5}"])
    assert [m["num_blocks"] for m in cfg.masks[:2]] == [8, 3]
    assert cfg.masks[2] == {"kind": "tube", "ratio": 0.5}  # index == length appends
    assert cfg.objective.predictor.depth == 2


def test_run_name_override_moves_derived_folders():
    cfg = load_config(MAIN_CONFIG, ["run.name=ablation"])
    assert (cfg.run.folder, cfg.launch.slurm_folder) == ("runs/ablation", "runs/ablation/slurm")


def test_override_can_repair_a_cross_check(tmp_path):
    path = write_yaml(tmp_path, {"data": {"crop_size": 100}})
    with pytest.raises(ConfigError, match="not divisible"):
        load_config(path)
    assert load_config(path, ["data.crop_size=96"]).data.crop_size == 96


@pytest.mark.parametrize("override, message", [
    ("optim.warmup_step=5", "--set 'optim.warmup_step=5': unknown key 'optim.warmup_step'; "
                            "did you mean 'optim.warmup_steps'?"),
    ("optim.lr", "expected key=value"),
    ("=3", "expected key=value"),
    ("masks.7.num_blocks=4", "'masks.7' needs a list index from 0 to 2"),
    ("masks.first.num_blocks=4", "'masks.first' needs a list index"),
    ("data.crop_size.x=4", "'data.crop_size' is 224, not a list or mapping"),
    ("data.weights.0=4", "'data.weights' is None, not a list or mapping"),
    ("optim.lr=[1, 2", "the value is not valid YAML"),
])
def test_bad_overrides(override, message):
    with pytest.raises(ConfigError) as e:
        apply_overrides({}, [override])
    assert message in str(e.value)


def test_bad_override_value_names_the_override(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config(MAIN_CONFIG, ["data.batch_size=many"])
    assert "with --set data.batch_size=many: 'data.batch_size' = 'many' is not an integer" in str(e.value)


def test_apply_overrides_does_not_mutate_input():
    raw = {"optim": {"lr": 1.0}}
    out = apply_overrides(raw, ["optim.lr=2.0", "masks.0.kind=tube"])
    assert raw == {"optim": {"lr": 1.0}}
    assert out["optim"]["lr"] == 2.0 and out["masks"][0]["kind"] == "tube"


# ----------------------------------------------------------------------------------- cross checks


@pytest.mark.parametrize("d, message", [
    ({"data": {"crop_size": 100}}, "'data.crop_size' = 100 is not divisible by 'model.patch_size' = 16; "
                                   "use a multiple such as 96 or 112"),
    ({"data": {"frames_per_clip": 7}}, "'data.frames_per_clip' = 7 is not divisible by 'model.tubelet_size' = 2"),
    ({"data": {"dataset": "image", "train": ["imgs/"], "frames_per_clip": 16}},
     "'data.dataset' = 'image' needs 'data.frames_per_clip' = 1"),
    ({"data": {"dataset": "video"}}, "'data.dataset' = 'video' needs 'data.train'"),
    ({"data": {"dataset": "video", "train": ["a.csv", "b.csv"], "weights": [1.0]}},
     "'data.weights' has 1 values but 'data.train' has 2 sources"),
    ({"data": {"short_video": "skip", "toy_frames": 16, "frames_per_clip": 16, "frame_step": 2}},
     "a clip spans 31 frames"),
    ({"objective": {"predictor": {"kind": "attention", "width": 100, "num_heads": 6}}},
     "'objective.predictor.width' = 100 is not divisible by 'objective.predictor.num_heads' = 6"),
    ({"masks": []}, "objective 'vjepa' needs at least one mask generator in 'masks'"),
    ({"optim": {"warmup_steps": 1000}, "train": {"epochs": 2, "steps_per_epoch": 100}},
     "'optim.warmup_steps' = 1000 is longer than the whole run (2 epochs x 100 steps)"),
    ({"optim": {"lr": 1e-4, "start_lr": 1e-3}}, "'optim.start_lr' = 0.001 exceeds the peak 'optim.lr'"),
    ({"launch": {"tasks_per_node": 2, "gpus_per_node": 8}},
     "'launch.tasks_per_node' = 2 must equal 'launch.gpus_per_node' = 8"),
])
def test_cross_checks(d, message):
    with pytest.raises(ConfigError) as e:
        config_from_dict(d, "x.yaml")
    assert str(e.value).startswith("x.yaml: ") and message in str(e.value)


@pytest.mark.parametrize("d", [
    {"data": {"dataset": "image", "train": ["imgs/"], "frames_per_clip": 1}},  # images skip the tubelet rule
    {"data": {"short_video": "pad", "toy_frames": 4, "frames_per_clip": 16}},  # padding allows short toys
    {"data": {"short_video": "skip", "toy_frames": 4, "frames_per_clip": 16, "fps": 5.0}},
    {"objective": {"predictor": {"kind": "mamba", "width": 100, "num_heads": 6}}},  # heads: attention only
    {"launch": {"tasks_per_node": 4, "gpus_per_node": 0}},                    # CPU-only jobs
])
def test_cross_checks_accept_valid_combinations(d):
    config_from_dict(d)
