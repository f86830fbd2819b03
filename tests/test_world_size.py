"""The loss does not depend on the number of processes: two gloo processes (or two GPUs under NCCL)
at a global batch of 8 train, step by step, as one process at 8, for every registered objective (an
objective registered later is picked up by the registry; one whose config cannot be built here is
skipped, saying why)."""

from __future__ import annotations

import pytest
import torch

from launch.local import launch_local
from vjm.config import config_from_dict
from vjm.objectives import objective_class, objective_names
from world_size_helpers import RTOL, buildable, read_steps, recipe, relative_differences, train_recording_steps


def shipped_objectives() -> list[str]:
    """The objectives vjm registers (tests register plugins of their own, e.g. test_objective_plugin's
    objective, whose metrics are per process by design)."""
    return [name for name in objective_names() if objective_class(name).__module__.startswith("vjm.")]


def one_and_two(tmp_path, toy_root, objective, devices, **sections) -> tuple[list[dict], list[dict]]:
    """Every step's metrics of the recipe trained on devices[:1] and on both ``devices``."""
    runs = {}
    for processes in (1, 2):
        raw = recipe(tmp_path / f"x{processes}", toy_root, objective, processes)
        for section, values in sections.items():
            raw[section].update(values)
        runs[processes] = raw
    problem = buildable(runs[1])
    if problem is not None:
        pytest.skip(f"objective {objective!r}: its tiny recipe does not build here ({problem}); give it one in "
                    "tests/world_size_helpers.recipe")
    for processes, raw in runs.items():
        launch_local(config_from_dict(raw), devices[:processes], train_fn=train_recording_steps)
    return read_steps(runs[1]), read_steps(runs[2])


def report(objective: str, what: str, one: list[dict], two: list[dict], capsys) -> dict[str, float]:
    """The largest relative difference of each metric over the steps, printed to the test log."""
    worst = relative_differences(one, two)
    with capsys.disabled():
        print(f"\n{objective} ({what}): 1 vs 2 processes, max relative difference over {len(one)} steps: "
              + ", ".join(f"{key} {value:.1e}" for key, value in sorted(worst.items())))
    assert one[0]["loss"] != one[1]["loss"]  # the run trains: a step changes the loss
    return worst


@pytest.mark.slow
@pytest.mark.parametrize("objective", shipped_objectives())
def test_two_gloo_processes_train_as_one(tmp_path, toy_root, objective, capsys):
    one, two = one_and_two(tmp_path, toy_root, objective, ["cpu", "cpu"])
    worst = report(objective, "cpu, gloo", one, two, capsys)
    assert all(value <= RTOL for value in worst.values()), worst


# On GPUs the kernels may pick other algorithms for a batch of 4 than of 8: fp32 agrees to rounding,
# bf16 autocast to its 8-bit mantissa.
GPU_RTOL = {"fp32": 1e-4, "bf16": 2e-2}


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA devices")
@pytest.mark.parametrize("dtype", sorted(GPU_RTOL))
@pytest.mark.parametrize("objective", shipped_objectives())
def test_two_gpus_train_as_one(tmp_path, toy_root, objective, dtype, capsys):
    one, two = one_and_two(tmp_path, toy_root, objective, ["cuda:0", "cuda:1"], train={"dtype": dtype})
    worst = report(objective, f"2 GPUs, NCCL, {dtype}", one, two, capsys)
    assert all(value <= GPU_RTOL[dtype] for value in worst.values()), worst
