"""The throughput bench runs on the CPU: its objective tables print numbers, and the small-clip
pass times the engine's own step stage by stage."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench import small_clip
from test_train import tiny_config, write_config

ROOT = Path(__file__).resolve().parents[1]


def test_objective_tables_print_a_row_with_clips_per_second_for_each_objective():
    done = subprocess.run(
        [sys.executable, "-m", "bench.throughput", "--tiny", "--tables", "mae", "arm", "supervised",
         "--models", "vit_tiny", "--arm-models", "mambamlp_tiny", "--set", "train.dtype=fp32"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = re.findall(r"^\| 4 \| 2 \| \d+ \| (\S+(?: \S+)?) \| [^|]+ \| [\d.]+ \| ([\d.]+) \|", done.stdout, re.M)
    assert [name for name, _ in rows] == ["vit_tiny", "vjm mambamlp_tiny", "vit_tiny"], done.stdout
    assert all(float(clips) > 0 for _, clips in rows)


def test_the_slws_table_times_the_step_without_and_with_it_in_the_same_round():
    done = subprocess.run(
        [sys.executable, "-m", "bench.throughput", "--tiny", "--tables", "slws", "--slws-rounds", "1",
         "--set", "train.dtype=fp32"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = re.findall(r"^\| 1 \| ([^|]+) \| ([\d.]+) \| [^|]+ \| ([\d.]+)x \|", done.stdout, re.M)
    assert [name.strip() for name, _, _ in rows] == ["none (slws at rate 0)", "slws, rate 0.5"], done.stdout
    clips = [float(c) for _, c, _ in rows]
    assert all(c > 0 for c in clips)  # the ratio, from unrounded rates, matches the printed ones closely
    assert float(rows[1][2]) == pytest.approx(clips[1] / clips[0], abs=0.1 * clips[1] / clips[0] + 0.01)


def test_small_clip_stages_add_up_to_the_timed_steps(tmp_path, toy_root, one_thread):
    raw = tiny_config(tmp_path, toy_root, train={"epochs": 1, "steps_per_epoch": 6})
    trainer = small_clip.small_clip_trainer(str(write_config(raw, tmp_path / "c.yaml")), [], torch.device("cpu"),
                                            toy_root, tmp_path / "run")
    assert small_clip.free_running(trainer, steps=2, warmup=1) > 0
    ms = small_clip.staged(trainer, steps=2, warmup=0)
    assert list(ms) == list(small_clip.STAGES) and all(value > 0 for value in ms.values())
    assert trainer.step == 5 and "optimizer_step" not in vars(trainer)  # the clock is gone afterwards
