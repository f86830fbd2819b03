"""The quality benchmark (evals.quality): what it runs, how it reads the probes, and that it starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from evals.quality import BUDGETS, Budget, markdown, parse_args, plan, summarise
from vjm.config import load_config
from vjm.data.bench_tasks import NUM_CLASSES, TASKS

REPO = Path(__file__).resolve().parents[1]
LISTS = {split: {task: f"/bench/{split}_{task}.txt" for task in TASKS} for split in ("train", "val")}


def small_budget(**changes) -> Budget:
    fields = {**BUDGETS["cpu"].__dict__, "steps": (8,), "pretrain_seeds": 2, "probe_seeds": 2, **changes}
    return Budget(**fields)


def test_plan_writes_one_config_per_run_with_its_data_and_length(tmp_path):
    args = parse_args(["--variant", "patch8", "model.patch_size=8"])
    encoders = plan(args, small_budget(), LISTS, tmp_path)
    rows = [(enc.row, enc.seed) for enc in encoders]
    assert rows == [("vjepa", 0), ("vjepa_patch8", 0), ("supervised_digit", 0), ("supervised_speed", 0),
                    (f"supervised_{TASKS[2]}", 0), ("vjepa", 1), ("vjepa_patch8", 1), ("random", 0),
                    ("random (vjepa_patch8)", 0)]
    vjepa = load_config(encoders[0].config)
    assert vjepa.objective.name == "vjepa" and vjepa.data.train == [LISTS["train"][task] for task in TASKS]
    assert vjepa.train.epochs * vjepa.train.steps_per_epoch >= 8 and vjepa.run.seed == 0
    supervised = load_config(encoders[2].config)
    assert (supervised.objective.name, supervised.objective.num_classes) == ("supervised", NUM_CLASSES["digit"])
    assert supervised.data.train == [LISTS["train"]["digit"]] and supervised.masks == [] and not supervised.data.hflip
    assert load_config(encoders[-1].config).model.patch_size == 8  # each architecture has its own control


def test_the_mae_row_is_the_mae_recipe_on_the_main_jobs_encoder_and_data(tmp_path):
    encoders = plan(parse_args([]), small_budget(pretrain_seeds=1, rows=("random", "mae")), LISTS, tmp_path)
    assert [enc.row for enc in encoders] == ["mae", "random"]
    mae, main = load_config(encoders[0].config), load_config(REPO / "configs" / "vjepa_tiny.yaml")
    recipe = load_config(REPO / "configs" / "mae_tiny.yaml")
    assert (mae.objective, mae.masks, mae.regularizers) == (recipe.objective, recipe.masks, recipe.regularizers)
    assert mae.optim.betas == recipe.optim.betas and mae.optim.warmup_steps == 1  # the benchmark's length
    assert mae.model == main.model and mae.data.train == [LISTS["train"][task] for task in TASKS]
    assert encoders[0].arch == encoders[1].arch  # compared with the main recipe's control


def test_the_table_pools_seeds_and_reads_the_gap_against_its_own_control(tmp_path):
    encoders = plan(parse_args([]), small_budget(), LISTS, tmp_path)
    readings = {"vjepa": 40.0, "supervised": 80.0, "random": 20.0}
    for enc in encoders:
        base = readings[enc.row.split("_")[0]]
        enc.probes = {task: [base + enc.seed, base + enc.seed + 2] for task in enc.tasks}
    table = summarise(encoders)
    vjepa = table["vjepa (8 steps)"]["digit"]
    assert vjepa["n"] == 4 and vjepa["mean"] == pytest.approx(41.5)
    assert vjepa["gap_closed"] == pytest.approx((41.5 - 21.0) / (81.0 - 21.0))
    text = markdown(table, "## test")
    assert "| chance | - | 10.0 |" in text and "41.5 ± 1.3 (n=4, 34% of gap)" in text


def test_runs_as_a_module_from_the_repository_root():
    done = subprocess.run([sys.executable, "-m", "evals.quality", "--help"], capture_output=True, text=True,
                          cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "--budget" in done.stdout and "--variant" in done.stdout
