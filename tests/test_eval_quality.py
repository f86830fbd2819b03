"""The quality benchmark (evals.quality): what it runs, how it reads the probes, and that it starts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import evals.quality as quality
from evals.quality import (BUDGETS, Budget, Job, Reading, markdown, parse_args, plan, pretraining_jobs,
                           probe_jobs, run_benchmark, run_jobs, summarise)
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
    bounds = [(f"supervised_{task}", seed) for seed in range(2) for task in TASKS]
    assert rows == [("vjepa", 0), ("vjepa_patch8", 0), *bounds[:3], ("vjepa", 1), ("vjepa_patch8", 1),
                    *bounds[3:], ("random", 0), ("random (vjepa_patch8)", 0)]
    vjepa = load_config(encoders[0].config, check_data=False)
    assert vjepa.objective.name == "vjepa" and vjepa.data.train == [LISTS["train"][task] for task in TASKS]
    assert vjepa.train.epochs * vjepa.train.steps_per_epoch >= 8 and vjepa.run.seed == 0
    supervised = load_config(encoders[2].config, check_data=False)
    assert (supervised.objective.name, supervised.objective.num_classes) == ("supervised", NUM_CLASSES["digit"])
    assert supervised.data.train == [LISTS["train"]["digit"]] and supervised.masks == [] and not supervised.data.hflip
    # Each seed's bound starts from the control's probe of the same random weights (run.seed = probe seed).
    second = next(enc for enc in encoders if enc.row == "supervised_digit" and enc.seed == 1)
    assert load_config(second.config, check_data=False).run.seed == 1
    assert second.head_probe == tmp_path / "probes" / "random" / "digit_probe1"
    # each architecture has its own control
    assert load_config(encoders[-1].config, check_data=False).model.patch_size == 8


def test_a_row_is_labelled_with_the_steps_its_run_takes(tmp_path):
    encoders = plan(parse_args(["--variant", "long", "train.epochs=3"]), small_budget(pretrain_seeds=1), LISTS,
                    tmp_path)
    long = next(enc for enc in encoders if enc.row == "vjepa_long")
    cfg = load_config(long.config, check_data=False)
    assert long.steps == cfg.train.epochs * cfg.train.steps_per_epoch == 24  # 3 epochs of the budget's 8 steps
    for enc in encoders:
        enc.readings = {"digit": [Reading(30.0)]}
    assert {"vjepa (8 steps)", "vjepa_long (24 steps)"} <= set(summarise(encoders))


def test_the_mae_row_is_the_mae_recipe_on_the_main_jobs_encoder_and_data(tmp_path):
    encoders = plan(parse_args([]), small_budget(pretrain_seeds=1, rows=("random", "mae")), LISTS, tmp_path)
    assert [enc.row for enc in encoders] == ["mae", "random"]
    mae, main = load_config(encoders[0].config, check_data=False), load_config(REPO / "configs" / "vjepa_tiny.yaml")
    recipe = load_config(REPO / "configs" / "mae_tiny.yaml")
    assert (mae.objective, mae.masks, mae.regularizers) == (recipe.objective, recipe.masks, recipe.regularizers)
    assert mae.optim.betas == recipe.optim.betas and mae.optim.warmup_steps == 1  # the benchmark's length
    assert mae.model == main.model and mae.data.train == [LISTS["train"][task] for task in TASKS]
    assert encoders[0].arch == encoders[1].arch  # compared with the main recipe's control


def test_the_arm_row_is_the_arm_recipe_with_its_causal_encoder_against_its_own_control(tmp_path):
    encoders = plan(parse_args([]), small_budget(pretrain_seeds=1, rows=("random", "arm")), LISTS, tmp_path)
    assert [enc.row for enc in encoders] == ["arm", "random", "random (arm)"]
    arm, main = load_config(encoders[0].config, check_data=False), load_config(REPO / "configs" / "vjepa_tiny.yaml")
    recipe = load_config(REPO / "configs" / "arm_tiny.yaml")
    assert (arm.objective, arm.model, arm.masks) == (recipe.objective, recipe.model, [])
    assert arm.optim.clip_grad == recipe.optim.clip_grad and arm.optim.warmup_steps == 1  # the benchmark's length
    assert arm.data.train == [LISTS["train"][task] for task in TASKS] and arm.data.crop_size == main.data.crop_size
    assert encoders[2].arch == encoders[0].arch != encoders[1].arch  # its control is its own architecture's


def test_the_table_pools_seeds_and_reads_the_gap_against_its_own_control(tmp_path):
    encoders = plan(parse_args([]), small_budget(), LISTS, tmp_path)
    readings = {"vjepa": 40.0, "supervised": 80.0, "random": 20.0}
    for enc in encoders:
        base = readings[enc.row.split("_")[0]]
        enc.readings = {task: [Reading(base + enc.seed), Reading(base + enc.seed + 2)] for task in enc.tasks}
    table = summarise(encoders)
    vjepa = table["vjepa (8 steps)"]["digit"]
    assert vjepa["n"] == 4 and vjepa["mean"] == pytest.approx(41.5)
    assert table["supervised (8 steps)"]["digit"]["n"] == 4  # a bound run per pre-training seed
    assert vjepa["gap_closed"] == pytest.approx((41.5 - 21.0) / (81.5 - 21.0))
    text = markdown(table, "## test")
    assert "| chance | - | 10.0 |" in text and "41.5 ± 1.3 (n=4, 34% of gap)" in text


def test_runs_as_a_module_from_the_repository_root():
    done = subprocess.run([sys.executable, "-m", "evals.quality", "--help"], capture_output=True, text=True,
                          cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "--budget" in done.stdout and "--variant" in done.stdout


def _writer(tmp_path: Path, name: str, seconds: float = 0.0) -> list[str]:
    """A command that sleeps, then appends its name to order.txt."""
    code = f"import time; time.sleep({seconds}); open({str(tmp_path / 'order.txt')!r}, 'a').write({name!r} + ' ')"
    return [sys.executable, "-c", code]


def test_jobs_start_when_what_they_wait_for_has_finished(tmp_path):
    done = []
    jobs = [Job("pretrain", _writer(tmp_path, "pretrain", 1.0), tmp_path / "a.log", on_done=done.append),
            Job("probe", _writer(tmp_path, "probe"), tmp_path / "b.log", after="pretrain"),
            Job("control", _writer(tmp_path, "control"), tmp_path / "c.log")]
    run_jobs(jobs, parallel=3, threads=1)
    # The control does not wait behind the probe, and the probe waits for its pre-training.
    assert (tmp_path / "order.txt").read_text().split() == ["control", "pretrain", "probe"]
    assert len(done) == 1 and done[0] >= 1.0


def test_a_failed_job_stops_the_benchmark_with_its_log(tmp_path):
    jobs = [Job("bad", [sys.executable, "-c", "print('the reason'); raise SystemExit(3)"], tmp_path / "bad.log"),
            Job("later", _writer(tmp_path, "later"), tmp_path / "later.log", after="bad")]
    with pytest.raises(RuntimeError, match=r"bad failed \(exit 3\)[\s\S]*the reason"):
        run_jobs(jobs, parallel=2, threads=1)
    with pytest.raises(RuntimeError, match="never run: \\['missing'\\]"):
        run_jobs([Job("orphan", _writer(tmp_path, "x"), tmp_path / "o.log", after="missing")], 1, 1)


def test_report_only_reads_what_finished_and_runs_nothing(tmp_path):
    args = parse_args(["--report-only"])
    encoders = plan(args, small_budget(probe_seeds=1), LISTS, tmp_path)
    trained = encoders[0]  # vjepa seed 0: pre-trained and probed on digit only
    trained.run_dir.mkdir(parents=True)
    (trained.run_dir / "pretrain_done.json").write_text('{"seconds": 60}')
    finished = tmp_path / "probes" / trained.run_dir.name / "digit_probe0"
    finished.mkdir(parents=True)
    (finished / "results.json").write_text('{"top1": 42.0}')
    run_benchmark(encoders, small_budget(probe_seeds=1), LISTS, tmp_path, args)
    assert trained.pretrain_s == 60 and [r.top1 for r in trained.readings["digit"]] == [42.0]
    assert all(not enc.readings for enc in encoders[1:])
    jobs, _ = probe_jobs(encoders, small_budget(probe_seeds=1), LISTS, tmp_path, args, [])
    assert all(job.after is None for job in jobs) and not any("vjepa_8steps_seed1" in job.name for job in jobs)


def test_the_control_has_as_many_readings_as_a_pre_trained_row(tmp_path):
    args = parse_args([])
    budget = small_budget(pretrain_seeds=2, probe_seeds=3)
    encoders = plan(args, budget, LISTS, tmp_path)
    jobs, _ = probe_jobs(encoders, budget, LISTS, tmp_path, args, pretraining_jobs(encoders, args))
    digit = [job.name for job in jobs if job.name.endswith(tuple(f"digit_probe{s}" for s in range(9)))]
    assert sorted(name for name in digit if " random " in name) == [f"probe random digit_probe{s}" for s in range(6)]
    assert sum(" vjepa_8steps_seed0 " in name for name in digit) == 3  # x 2 pre-training seeds = 6 readings
    assert sum(" supervised_digit_8steps_seed0 " in name for name in digit) == 3  # one run per task: 3 readings


def test_every_head_of_the_grid_is_tabulated_by_its_rate_none_picked(tmp_path):
    args = parse_args(["--report-only"])
    budget = small_budget(probe_seeds=2, pretrain_seeds=1)
    encoders = plan(args, budget, LISTS, tmp_path)
    trained = encoders[0]  # vjepa seed 0
    trained.run_dir.mkdir(parents=True)
    (trained.run_dir / "pretrain_done.json").write_text('{"seconds": 60}')
    for seed, offset in ((0, 0.0), (1, 4.0)):
        folder = tmp_path / "probes" / trained.run_dir.name / f"speed_probe{seed}"
        folder.mkdir(parents=True)
        heads = [{"lr": lr, "weight_decay": wd, "top1": top1 + offset}
                 for lr, wd, top1 in ((1e-2, 0.01, 80.0), (1e-2, 0.1, 90.0), (1e-3, 0.01, 30.0), (1e-3, 0.1, 40.0))]
        # Seed 1 picked its best head on held-out training clips: 94 there, 95 by the best on the val clips.
        picked = {"top1_picked_on_val": 95.0, "best_head": 1, "picked_on": "held-out training clips",
                  "early_stopping": True} if seed else {}
        if seed:
            heads[1].update(train_top1=99.0, holdout_top1=96.0)
        (folder / "results.json").write_text(json.dumps({"top1": 90.0 + offset, "heads": heads, **picked}))
    run_benchmark(encoders, budget, LISTS, tmp_path, args)
    row = summarise(encoders)["vjepa (8 steps)"]
    assert row["speed"]["mean"] == 92.0  # the best head of each probe
    assert row["picked_on_val"]["speed"]["values"] == [90.0, 95.0]
    assert row["head_rates"]["speed"][0.01]["mean"] == 87.0 and row["head_rates"]["speed"][0.001]["n"] == 4
    assert row["head_rates"]["speed"][0.001]["mean"] == 37.0 and "digit" not in row["head_rates"]
    text = markdown(summarise(encoders), "## test")
    assert "| encoder | speed lr 0.01 | speed lr 0.001 |" in text
    assert "| vjepa (8 steps) | 87.0 ± 6.2 | 37.0 ± 6.2 |" in text
    assert "picked on the validation clips (V-JEPA's practice):" in text and "| 92.5 ± 3.5 (n=2) |" in text
    # The picked head's fit, where the probe held clips out: memorising shows as train far above held out.
    assert row["fit"]["speed"]["train"]["values"] == [99.0] and row["fit"]["speed"]["held out"]["mean"] == 96.0
    assert "| vjepa (8 steps) | - | 99.0 / 96.0 / 94.0 | - |" in text
    # The footer says how the probes picked (here two ways: an older probe's results name none).
    assert ("best head (picked on the held-out training clips, each head at its best epoch there; or on the "
            "validation clips, at the last epoch)") in text


def test_no_share_of_a_gap_that_is_inside_the_spread(tmp_path):
    encoders = plan(parse_args([]), small_budget(), LISTS, tmp_path)
    readings = {"vjepa": 30.0, "supervised": 22.0, "random": 20.0}  # the bound within the noise
    for enc in encoders:
        base = readings[enc.row.split("_")[0]]
        enc.readings = {task: [Reading(base - 2), Reading(base + 2)] for task in enc.tasks}
    table = summarise(encoders)
    assert table["vjepa (8 steps)"]["digit"]["gap_closed"] is None
    assert "30.0 ± 2.3 (n=4, no gap)" in markdown(table, "## test")


def test_a_fine_tuned_bound_is_trained_by_evals_finetune_and_read_from_its_results(tmp_path):
    args = parse_args(["--bound", "finetune"])
    budget = small_budget(pretrain_seeds=1, probe_seeds=1)
    encoders = plan(args, budget, LISTS, tmp_path)
    bound = next(enc for enc in encoders if enc.row == "supervised_digit")
    cfg = load_config(bound.config, check_data=False)
    assert cfg.data.val == [LISTS["val"]["digit"]] and cfg.objective.name == "supervised"
    jobs = pretraining_jobs(encoders, args)
    command = next(job.command for job in jobs if job.name == bound.run_dir.name)
    assert command[1:3] == ["-m", "evals.finetune"] and "--random-init" in command
    probes, _ = probe_jobs(encoders, budget, LISTS, tmp_path, args, jobs)
    assert probes and not any("supervised" in job.name for job in probes)  # read, not probed
    bound.run_dir.mkdir(parents=True)
    (bound.run_dir / "pretrain_done.json").write_text('{"seconds": 30}')
    (bound.run_dir / "results.json").write_text('{"top1": 91.5}')
    run_benchmark(encoders, budget, LISTS, tmp_path, parse_args(["--bound", "finetune", "--report-only"]))
    assert bound.readings == {"digit": [Reading(91.5)]}


def test_the_mfd_row_distils_the_mae_run_of_its_seed_after_it_has_trained(tmp_path):
    args = parse_args(["--rows", "random", "mfd"])
    encoders = plan(args, small_budget(pretrain_seeds=1, rows=("random", "mfd")), LISTS, tmp_path)
    assert [enc.row for enc in encoders] == ["mae", "mfd", "random"]  # the teacher is planned with it
    mae, mfd = encoders[0], encoders[1]
    student = load_config(mfd.config, check_data=False)
    assert student.objective.name == "mfd" and student.objective.teacher.checkpoint == str(mae.run_dir / "latest.pt")
    assert mfd.arch == encoders[2].arch  # the main recipe's encoder and control
    jobs = {job.name: job for job in pretraining_jobs(encoders, args)}
    assert jobs[mfd.run_dir.name].after == mae.run_dir.name and jobs[mae.run_dir.name].after is None
    (mae.run_dir).mkdir(parents=True)
    (mae.run_dir / "pretrain_done.json").write_text('{"seconds": 1.0}')  # a rerun: the teacher is done
    jobs = {job.name: job for job in pretraining_jobs(encoders, args)}
    assert mae.run_dir.name not in jobs and jobs[mfd.run_dir.name].after is None


def test_the_slws_row_adds_slws_to_the_main_recipes_regularisers(tmp_path):
    encoders = plan(parse_args([]), small_budget(pretrain_seeds=1, rows=("vjepa_slws",)), LISTS, tmp_path)
    recipe = load_config(REPO / "configs" / "vjepa_tiny.yaml")
    regularizers = load_config(encoders[0].config, check_data=False).regularizers
    assert regularizers == recipe.regularizers + [{"kind": "slws", "rate": 0.1}]


def test_labelled_rows_start_from_a_probe_head_of_their_starting_weights_and_wait_for_it(tmp_path, monkeypatch):
    rows = ("random", "vjepa_finetuned", "supervised")
    args = parse_args(["--rows", *rows, "--bound", "finetune"])
    budget = small_budget(pretrain_seeds=1, probe_seeds=2, rows=rows)
    encoders = plan(args, budget, LISTS, tmp_path)
    jobs = {}
    monkeypatch.setattr(quality, "run_jobs", lambda todo, parallel, threads: jobs.update({j.name: j for j in todo}))
    run_benchmark(encoders, budget, LISTS, tmp_path, args)
    starts = {"supervised_digit": "random", "vjepa_finetuned": "vjepa_8steps_seed0"}  # whose probe, seed 0
    for enc in encoders:
        if enc.row not in starts:
            continue
        task = enc.tasks[0]
        probe = tmp_path / "probes" / starts[enc.row] / f"{task}_probe0"
        assert load_config(enc.config, check_data=False).objective.init.head == str(probe) == str(enc.head_probe)
        assert jobs[enc.run_dir.name].after == f"probe {starts[enc.row]} {task}_probe0"
    assert jobs["probe vjepa_8steps_seed0 digit_probe0"].after == "vjepa_8steps_seed0"
    with pytest.raises(SystemExit):  # the bound needs the control's probe
        parse_args(["--rows", "supervised"])


def test_the_fine_tuned_row_starts_from_each_vjepa_run_and_reads_its_own_classifier(tmp_path):
    args = parse_args(["--rows", "vjepa_finetuned", "--bound", "finetune"])
    budget = small_budget(steps=(4, 8), probe_seeds=1, rows=("vjepa_finetuned",))
    encoders = plan(args, budget, LISTS, tmp_path)
    tuned = [enc for enc in encoders if enc.row == "vjepa_finetuned"]
    assert [(enc.tasks, enc.seed) for enc in tuned] == [((task,), seed) for seed in (0, 1) for task in TASKS]
    longest = {seed: next(enc for enc in encoders if (enc.row, enc.seed, enc.steps) == ("vjepa", seed, 8))
               for seed in (0, 1)}
    cfg = load_config(tuned[0].config, check_data=False)
    assert cfg.objective.name == "supervised" and cfg.data.val == [LISTS["val"][TASKS[0]]]
    jobs = {job.name: job for job in pretraining_jobs(encoders, args)}
    for enc in tuned:  # after the largest budget's run of its seed, from its checkpoint
        job = jobs[enc.run_dir.name]
        assert job.after == longest[enc.seed].run_dir.name and job.command[1:3] == ["-m", "evals.finetune"]
        assert job.command[job.command.index("--checkpoint") + 1] == str(longest[enc.seed].run_dir / "latest.pt")
    probes, _ = probe_jobs(encoders, budget, LISTS, tmp_path, args, list(jobs.values()))
    assert probes and not any("finetuned" in job.name for job in probes)  # read, not probed
    tuned[0].run_dir.mkdir(parents=True)
    (tuned[0].run_dir / "pretrain_done.json").write_text('{"seconds": 30}')
    (tuned[0].run_dir / "results.json").write_text('{"top1": 77.0}')
    run_benchmark(encoders, budget, LISTS, tmp_path, parse_args(["--bound", "finetune", "--report-only"]))
    assert tuned[0].readings == {TASKS[0]: [Reading(77.0)]}


def test_a_probe_protocol_has_folders_and_a_table_of_its_own(tmp_path):
    args = parse_args(["--report-only", "--probe-set", "data.label_fraction=0.25"])
    budget = small_budget(probe_seeds=1, pretrain_seeds=1)
    encoders = plan(args, budget, LISTS, tmp_path)
    trained = encoders[0]
    trained.run_dir.mkdir(parents=True)
    (trained.run_dir / "pretrain_done.json").write_text('{"seconds": 60}')
    # A finished probe of the default protocol is not this protocol's reading.
    default = tmp_path / "probes" / trained.run_dir.name / "digit_probe0"
    default.mkdir(parents=True)
    (default / "results.json").write_text('{"top1": 42.0}')
    run_benchmark(encoders, budget, LISTS, tmp_path, args)
    assert not trained.readings  # the default protocol's 42.0 is not this protocol's reading
    jobs, where = probe_jobs(encoders, budget, LISTS, tmp_path, args, [])
    low_shot = tmp_path / "probes" / trained.run_dir.name / "digit_probe0_data.label_fraction=0.25"
    assert low_shot in where and default not in where
    command = next(job.command for job in jobs if job.folder == low_shot)
    assert "data.label_fraction=0.25" in command and command[command.index("--output-dir") + 1] == str(low_shot)
    bound = next(enc for enc in encoders if enc.row == "supervised_digit")
    assert bound.head_probe == tmp_path / "probes" / "random" / "digit_probe0_data.label_fraction=0.25"
    (low_shot.mkdir(parents=True), (low_shot / "results.json").write_text('{"top1": 30.0}'))
    run_benchmark(encoders, budget, LISTS, tmp_path, args)
    assert [r.top1 for r in trained.readings["digit"]] == [30.0]
