"""The toy-quality experiment (evals.quality): which encoders it probes, and that it runs from the root."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from evals.quality import RANDOM, encoder_rows

REPO = Path(__file__).resolve().parents[1]


def test_rows_default_to_the_objectives_encoder_then_the_control():
    assert list(encoder_rows("vjepa", None)) == ["target_encoder", RANDOM]
    rows = encoder_rows("vjepa", ["encoder", "target_encoder", RANDOM])
    assert list(rows) == ["encoder", "target_encoder", RANDOM]
    assert rows[RANDOM] == "random init (control)" and rows["encoder"] == "vjepa, encoder"


def test_an_encoder_the_objective_lacks_names_the_choices():
    with pytest.raises(ValueError, match="--encoders context: objective 'vjepa' has the encoders target_encoder, "
                                         "encoder; choose from those and 'random'"):
        encoder_rows("vjepa", ["context"])


def test_runs_as_a_module_from_the_repository_root():
    done = subprocess.run([sys.executable, "-m", "evals.quality", "--help"], capture_output=True, text=True,
                          cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "--encoders" in done.stdout and "--checkpoint" in done.stdout
