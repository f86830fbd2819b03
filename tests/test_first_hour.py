"""A researcher's first hour (issue 22): run folders that keep their history, CPU threads that fit,
messages that say what happened, the README's and --help's commands, exported encoders."""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch
from test_launch import clean_process_state  # noqa: F401  (autouse: launchers touch the root logger)
from test_train import read_losses, tiny_config, write_config

from vjm.config import ConfigError, _unknown_key, config_from_dict, load_config
from vjm.cpu import default_threads, use_threads
from vjm.data.errors import DataError, MissingDataError, UnreadableDataError
from vjm.eval.config import EvalConfig
from vjm.train.distributed import DistInfo
from vjm.train.engine import Trainer
from vjm.train.run_folder import ConfigChangeError

ROOT = Path(__file__).resolve().parents[1]
MAIN_CONFIG = ROOT / "configs" / "vjepa_tiny.yaml"


def short_run(tmp_path: Path, toy_root: Path, **sections) -> dict:
    """tiny_config for 2 steps (one epoch), TensorBoard on, a checkpoint at the end."""
    raw = tiny_config(tmp_path, toy_root, train={"epochs": 1, "steps_per_epoch": 2, "checkpoint_every": 50})
    for section, values in sections.items():
        raw[section].update(values)
    return raw


# ----------------------------------------------------------------------------- 1. run folders


def test_a_run_folder_keeps_its_config_refuses_a_changed_recipe_and_records_an_allowed_one(tmp_path, toy_root,
                                                                                            caplog):
    run = tmp_path / "run"
    # A run that fails before it starts writes no config.
    with pytest.raises(ConfigError, match="train.steps_per_epoch=99"):
        Trainer(config_from_dict(short_run(tmp_path, toy_root, train={"steps_per_epoch": 99})), DistInfo()).fit()
    assert not (run / "config.yaml").exists()

    first = config_from_dict(short_run(tmp_path, toy_root))
    Trainer(first, DistInfo()).fit()
    config_text = (run / "config.yaml").read_text()
    assert load_config(run / "config.yaml") == first
    with (run / "log.csv").open() as f:
        assert [row.split(",")[1] for row in f.read().splitlines()[1:]] == ["1", "1"]  # epochs shown from 1

    # Another learning rate: refused in one line naming the change and both ways on; nothing written.
    changed = short_run(tmp_path, toy_root, optim={"lr": 2e-3}, train={"epochs": 2})
    with pytest.raises(ConfigChangeError) as refused:
        Trainer(config_from_dict(changed), DistInfo()).fit()
    message = str(refused.value)
    assert "\n" not in message and message.startswith(f"{run / 'latest.pt'} was trained with another config: "
                                                      "optim.lr 0.001 -> 0.002. ")
    assert "--set run.folder=runs/<new name>" in message and "--allow-config-change" in message
    assert "train.epochs" not in message  # run length may change
    assert (run / "config.yaml").read_text() == config_text and not (run / "config_history").exists()

    # Allowed: the run goes on, the old config moves to the history and the change is logged.
    caplog.set_level(logging.INFO)
    trainer = Trainer(config_from_dict(changed), DistInfo(), allow_config_change=True)
    trainer.fit()
    assert trainer.step == 4 and "resumed from" in caplog.text and "at step 2 (epoch 2 of 2)" in caplog.text
    assert load_config(run / "config.yaml").optim.lr == 2e-3
    assert (run / "config_history" / "config.step00000002.yaml").read_text() == config_text
    log = (run / "config_history" / "changes.log").read_text()
    assert re.search(r"step 2: optim.lr 0.001 -> 0.002; train.epochs 1 -> 2 \(--allow-config-change\); the "
                     r"previous config is config.step00000002.yaml\n$", log), log
    assert sorted(read_losses(run)) == [1, 2, 3, 4]

    # The finished run started again: one line, and nothing written (no TensorBoard file either).
    before = sorted(p.name for p in run.rglob("*"))
    caplog.clear()
    assert Trainer(config_from_dict(changed), DistInfo()).fit() == {}
    assert "run already complete (4/4 steps); nothing to do" in caplog.text
    assert sorted(p.name for p in run.rglob("*")) == before


def test_launchers_refuse_a_changed_recipe_before_building_or_queueing(tmp_path, toy_root, monkeypatch, capsys):
    import launch.submitit as launch_submitit
    from launch.local import main as local_main

    raw = short_run(tmp_path, toy_root)
    Trainer(config_from_dict(raw), DistInfo()).save()
    config = write_config(raw, tmp_path / "tiny.yaml")

    def never(*args, **kwargs):
        raise AssertionError("the launcher went past the run-folder check")

    for main, module in ((local_main, "launch.local"), (launch_submitit.main, "launch.submitit")):
        for name in ("launch_local", "submit"):
            monkeypatch.setattr(f"{module}.{name}", never, raising=False)
        argv = ["--fname", str(config), "--set", "model.depth=3", "optim.lr=1e-4"]
        capsys.readouterr()
        with pytest.raises(SystemExit) as e:
            main(argv if main is local_main else [*argv, "--local"])
        err = capsys.readouterr().err
        assert e.value.code == 2 and "ConfigChangeError" not in err  # no traceback
        assert err.splitlines()[-1].startswith("error: "), err
        assert "model.depth 2 -> 3; optim.lr 0.001 -> 0.0001" in err.splitlines()[-1]


# ----------------------------------------------------------------------------- 2. threads


def test_default_threads_leave_a_core_per_loader_worker_and_share_the_cores():
    assert default_threads(workers=2, cores=16) == 14
    assert default_threads(workers=2, processes=2, cores=16) == 6
    assert default_threads(workers=8, cores=4) == 1  # never below one


def test_use_threads_sets_torch_and_says_why(monkeypatch, caplog):
    caplog.set_level(logging.INFO)
    monkeypatch.setattr("vjm.cpu.usable_cores", lambda: 4)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    try:
        assert use_threads(None, workers=1) == 3 == torch.get_num_threads()
        assert "3 intra-op thread(s) and 1 loader worker(s) on the 4 core(s) this process may use" in caplog.text
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        assert use_threads(None, workers=1) == 2 and "(OMP_NUM_THREADS)" in caplog.text
        caplog.clear()
        assert use_threads(4, workers=2) == 4 == torch.get_num_threads()  # asked for: honoured, with a warning
        assert "exceed the 4 core(s)" in caplog.text
    finally:
        torch.set_num_threads(before)


# ----------------------------------------------------------------------------- 3. messages


@pytest.mark.parametrize("key, meant", [
    ("optim.learning_rate", "optim.lr"), ("optim.epochs", "train.epochs"), ("optim.wd", "optim.weight_decay"),
    ("optim.weight_decay_end", "optim.final_weight_decay"), ("train.batch_size", "data.batch_size"),
    ("weight_decay", "optim.weight_decay"), ("optim.warmup_stepz", "optim.warmup_steps"),
])
def test_nearest_key_prefers_known_synonyms_and_the_right_section(key, meant):
    assert _unknown_key(key).endswith(f"did you mean '{meant}'?")


def test_the_probe_config_suggests_its_own_keys():
    assert _unknown_key("optim.epochs", EvalConfig).endswith("did you mean 'train.epochs'?")
    assert _unknown_key("optim.learning_rate", EvalConfig).endswith("did you mean 'optim.lr'?")


class _Unreadable(torch.utils.data.Dataset):
    def __len__(self):
        return 2

    def __getitem__(self, index):
        raise UnreadableDataError("21 samples in a row could not be read (the last: '/data/a.mp4': file is "
                                  "empty). The data is mostly unreadable; check the paths and files.")


def test_a_data_error_in_a_loader_worker_is_summarised_in_one_line():
    loader = torch.utils.data.DataLoader(_Unreadable(), num_workers=1)
    with pytest.raises(DataError) as e:
        next(iter(loader))
    assert "Traceback" in str(e.value)  # what PyTorch re-raises
    assert e.value.summary == ("21 samples in a row could not be read (the last: '/data/a.mp4': file is empty). The "
                               "data is mostly unreadable; check the paths and files. (in a data-loader worker)")


def test_a_launch_on_missing_videos_ends_in_one_error_line(tmp_path, toy_root, monkeypatch, capsys):
    from launch.local import main as local_main

    listing = tmp_path / "train.csv"
    listing.write_text("".join(f"/nowhere/clip{i}.mp4 0\n" for i in range(4)))
    raw = short_run(tmp_path, toy_root, data={"dataset": "video", "train": [str(listing)]})
    config = write_config(raw, tmp_path / "missing.yaml")
    monkeypatch.delenv("VJM_DEBUG", raising=False)
    with pytest.raises(SystemExit) as e:
        local_main(["--fname", str(config), "--devices", "cpu"])
    err = capsys.readouterr().err.splitlines()
    assert e.value.code == 2 and err[-1].startswith("error: 4 of 4 checked paths from ")
    assert str(listing) in err[-1] and "Check the list's paths" in err[-1] and "VJM_DEBUG=1" in err[-1]
    assert not any("MissingDataError" in line for line in err)  # no traceback
    monkeypatch.setenv("VJM_DEBUG", "1")
    with pytest.raises(MissingDataError):
        local_main(["--fname", str(config), "--devices", "cpu"])


def test_a_random_init_control_has_no_step(tmp_path, toy_root):
    from vjm.eval.frozen import load_frozen_encoder

    Trainer(config_from_dict(short_run(tmp_path, toy_root)), DistInfo()).save()
    _, info = load_frozen_encoder(tmp_path / "run" / "latest.pt", random_init=True)
    assert info.random_init and info.step is None


def test_the_mask_picture_has_a_legend_for_rows_columns_and_colours(tmp_path):
    from PIL import Image

    from vjm.masks import build_mask_generators
    from vjm.masks import show

    grid = (4, 3, 5)
    assert show.layout_text(grid).startswith("a row is one sample (numbered left); a column is one time step t' "
                                             "of 4, an 3x5 grid of tokens")
    assert [code for _, code in show.LEGEND] == [show.CONTEXT, show.TARGET, show.UNUSED]
    path = show.draw_masks(build_mask_generators([{"kind": "tube", "ratio": 0.5}], grid), grid, 2, tmp_path / "m.png")
    image = torch.from_numpy(np.array(Image.open(path).convert("RGB")))
    ink = (image != torch.tensor(show._BACKGROUND, dtype=torch.uint8)).any(-1)
    under_legend = show._MARGIN + 3 * show._LINE + show._GAP
    for line in (1, 2):  # the sentence, on two lines
        assert ink[show._MARGIN + line * show._LINE: show._MARGIN + (line + 1) * show._LINE - 4].any()
    numbers = ink[under_legend:, show._MARGIN: show._MARGIN + show._LABEL_W - 4]  # left of the rows
    assert numbers.any(dim=1).sum() >= 2 * 5  # "1" and "2"


# ----------------------------------------------------------------------------- 3-4. every documented command


def entry_points() -> dict[str, object]:
    """module -> its argument parser (evals.quality: the module, whose parse_args parses), for every
    command the README names."""
    import evals.quality as quality

    modules = ["launch.local", "launch.submitit", "evals.attentive_probe", "evals.finetune", "vjm.export",
               "vjm.masks.show", "vjm.objectives.show"]
    parsers = {name: importlib.import_module(name).build_parser() for name in modules}
    parsers["evals.quality"] = quality
    return parsers


def set_examples(text: str) -> list[list[str]]:
    """The KEY=VALUE lists that follow each --set in ``text`` (placeholders in capitals or <...> left out)."""
    examples = []
    for match in re.finditer(r"--set((?:\s+'[^']*'|\s+[^\s'`)(;]+=[^\s`)(;]+)+)", text):
        values = [v.strip("'") for v in shlex.split(match.group(1)) if "=" in v]
        if values and not any(v.split("=")[0].isupper() or "<" in v or v.endswith("...") for v in values):
            examples.append(values)
    return examples


def check_overrides(overrides: list[str], schema: str) -> None:
    if schema == "eval":
        load_config(ROOT / "configs" / "eval" / "toy_direction.yaml", overrides, cls=EvalConfig, check_data=False)
    else:
        load_config(MAIN_CONFIG, overrides, check_data=False)


@pytest.mark.parametrize("module", ["launch.local", "launch.submitit", "evals.attentive_probe", "evals.finetune",
                                    "evals.quality", "vjm.export", "vjm.masks.show", "vjm.objectives.show"])
def test_every_set_example_of_every_help_is_a_valid_key(module):
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        importlib.import_module(module).main(["--help"])
    examples = set_examples(out.getvalue())
    if module in ("launch.local", "launch.submitit", "evals.attentive_probe"):
        assert examples, f"{module} --help shows no --set example"
    for overrides in examples:
        check_overrides(overrides, "eval" if module == "evals.attentive_probe" else "pretrain")


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    lines = "\n".join(blocks).replace("\\\n", " ").splitlines()
    return [line.split("#")[0].strip() for line in lines if line.strip().startswith("python -m ")]


def test_the_readme_commands_parse_and_their_overrides_are_valid_keys():
    parsers = entry_points()
    commands = readme_commands()
    assert len(commands) >= 15
    for command in commands:
        argv = shlex.split(command)
        module, args = argv[2], argv[3:]
        if not module.startswith(("launch.", "evals.", "vjm.")):
            continue  # python -m venv, pytest
        assert module in parsers, f"README runs {module}, which this test does not know"
        parsed = parsers[module].parse_args(args)  # an unknown flag exits
        schema = "eval" if module == "evals.attentive_probe" else "pretrain"
        overrides = list(getattr(parsed, "overrides", []))
        fname = getattr(parsed, "fname", None)
        if fname is not None and module != "evals.attentive_probe":
            load_config(ROOT / fname, overrides, check_data=False)
        elif fname is not None:
            load_config(ROOT / fname, overrides, cls=EvalConfig, check_data=False)
        else:
            check_overrides(overrides, schema)
        for _, variant in getattr(parsed, "variant", []):
            check_overrides(variant, "pretrain")
    # Examples written in the text, outside the code blocks (checked above against their own --fname), too.
    prose = re.sub(r"```.*?```", "", (ROOT / "README.md").read_text(), flags=re.S)
    for overrides in set_examples(prose):
        check_overrides(overrides, "pretrain")


def test_the_readme_model_snippet_runs_without_gradients():
    text = (ROOT / "README.md").read_text()
    snippet = re.search(r"```python\n(import torch\nfrom vjm.models import build.*?)```", text, flags=re.S).group(1)
    assert "torch.no_grad()" in snippet


# ----------------------------------------------------------------------------- 5. exported encoders


def test_an_exported_encoder_round_trips_and_the_probe_takes_it(tmp_path, toy_root, capsys):
    from safetensors.torch import save_file

    from vjm.eval.frozen import load_frozen_encoder
    from vjm.export import main as export_main
    from vjm.models import build, load_exported

    raw = short_run(tmp_path, toy_root)
    Trainer(config_from_dict(raw), DistInfo()).save()
    checkpoint = tmp_path / "run" / "latest.pt"
    out = tmp_path / "encoder.safetensors"
    assert export_main(["--checkpoint", str(checkpoint), "--out", str(out)]) == out
    assert capsys.readouterr().out.strip() == str(out)

    trained, info = load_frozen_encoder(checkpoint)
    exported, meta = load_exported(out)
    assert (meta["objective"], meta["encoder"], meta["step"]) == ("vjepa", "target_encoder", "0")
    clip = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(exported.eval()(clip), trained(clip), rtol=0, atol=0)
        built = build("videomamba_tiny", weights=str(out), embed_dim=32, depth=2).eval()
        torch.testing.assert_close(built(clip), trained(clip), rtol=0, atol=0)

    # The probe takes the file as its checkpoint: the same encoder, named as the checkpoint's.
    probed, probed_info = load_frozen_encoder(out)
    assert (probed_info.fingerprint, probed_info.objective, probed_info.which, probed_info.step) == (
        info.fingerprint, "vjepa", "target_encoder", 0)
    assert probed_info.is_default

    # Another model: one line naming the settings that differ and how to build the file's own.
    with pytest.raises(ValueError) as e:
        build("videomamba_tiny", weights=str(out))
    assert "\n" not in str(e.value) and "model.embed_dim=32 model.depth=2" in str(e.value)
    assert "vjm.models.load_exported(" in str(e.value)
    # A safetensors file that vjm did not write.
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(ValueError, match="not a vjm encoder"):
        load_exported(foreign)
