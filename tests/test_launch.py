"""Launchers: SLURM-or-local decision, submitit parameters and requeue, local process spawning.

Training itself is replaced by recording functions: the module-level ones write one JSON file per
process into the run folder, since spawned processes share no memory with the test.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import pickle
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from submitit.helpers import DelayedSubmission

import launch.submitit as launch_submitit
from launch.local import check_devices, launch_local
from launch.local import main as local_main
from launch.submitit import TrainingJob, apply_launch_flags, executor_parameters, make_executor, submit
from vjm.config import Config, ConfigError, load_config
from vjm.console import setup_logging
from vjm.train import distributed as vdist

ROOT = Path(__file__).resolve().parents[1]
MAIN_CONFIG = ROOT / "configs" / "vjepa_tiny.yaml"


@pytest.fixture(autouse=True)
def clean_process_state():
    """Launchers touch os.environ and the root logger: give each test its own."""
    env = dict(os.environ)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    os.environ.clear()
    os.environ.update(env)
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
    root.setLevel(level)


@pytest.fixture
def toy_cfg_dict(tmp_path):
    """A tiny CPU job (as in test_train) that checkpoints only at its end."""
    from test_train import tiny_config

    return tiny_config(tmp_path, tmp_path / "toy", launch={"gpus_per_node": 0},
                       train={"checkpoint_every": 50, "tensorboard": False})


def make_cfg(tmp_path: Path, *overrides: str) -> Config:
    return load_config(MAIN_CONFIG, [f"run.folder={tmp_path / 'run'}", *overrides])


def record_to_file(cfg: Config, dist: vdist.DistInfo) -> dict:
    """Stand-in trainer run in spawned processes: checks the process group works and records what it saw."""
    mean_rank = vdist.all_reduce_mean(float(dist.rank))
    mean_vec = vdist.all_reduce_mean(torch.tensor([dist.rank, 2.0 * dist.rank], device=dist.device))
    torch.distributed.barrier()
    record = {
        "rank": dist.rank, "world_size": dist.world_size, "local_rank": dist.local_rank, "device": str(dist.device),
        "is_main": dist.is_main, "group_world_size": vdist.get_world_size(),
        "mean_rank": mean_rank, "mean_vec": mean_vec.tolist(), "run_name": cfg.run.name,
        "num_workers": cfg.data.num_workers, "master_port": os.environ.get("MASTER_PORT"),
        "root_level": logging.getLogger().level, "nccl_nvls": os.environ.get("NCCL_NVLS_ENABLE"),
    }
    out = Path(cfg.run.folder)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"rank{dist.rank}.json").write_text(json.dumps(record))
    return {"loss": 0.25, "rank": dist.rank}


def read_records(cfg: Config, n: int) -> list[dict]:
    paths = sorted(Path(cfg.run.folder).glob("rank*.json"))
    assert len(paths) == n, f"expected {n} records, found {[p.name for p in paths]}"
    return [json.loads(p.read_text()) for p in paths]


def fake_slurm_bin(tmp_path: Path) -> Path:
    """A PATH folder with an sbatch that keeps the script it is given and answers like SLURM, and an srun."""
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    scripts = {
        "sbatch": '#!/bin/sh\ncp "$1" "$SBATCH_COPY"\necho "Submitted batch job 4242"\n',
        "srun": "#!/bin/sh\nexit 0\n",
    }
    for name, text in scripts.items():
        path = bin_dir / name
        path.write_text(text)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return bin_dir


# ------------------------------------------------------------------------------ logging, devices


def test_setup_logging_rank_format_and_levels(capsys):
    setup_logging(3)
    setup_logging(1)  # replaces, does not add
    root = logging.getLogger()
    ours = [h for h in root.handlers if getattr(h, "_vjm_launch", False)]
    assert len(ours) == 1 and root.level == logging.WARNING
    logging.getLogger("vjm.test").info("hidden on rank 1")
    logging.getLogger("vjm.test").warning("shown on rank 1")
    err = capsys.readouterr().err
    assert "hidden" not in err and "[rank 1] WARNING vjm.test: shown on rank 1" in err
    setup_logging(0)
    assert root.level == logging.INFO


def test_check_devices():
    assert check_devices(["cpu", "cpu"]) == ["cpu", "cpu"]
    with pytest.raises(ValueError, match="no devices given"):
        check_devices([])
    with pytest.raises(ValueError, match="unknown device 'gpu0'"):
        check_devices(["gpu0"])
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available here; use 'cpu'"):
            check_devices(["cpu", "cuda:0"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_check_devices_cuda():
    with pytest.raises(ValueError, match="mix CPU and CUDA"):
        check_devices(["cpu", "cuda:0"])
    with pytest.raises(ValueError, match="more than once"):
        check_devices(["cuda:0", "cuda:0"])


def test_free_port_is_bindable():
    import socket

    port = vdist.find_free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_single_process_needs_no_group():
    dist = vdist.init_distributed("cpu")
    assert dist == vdist.DistInfo(0, 1, 0, torch.device("cpu"))
    assert not torch.distributed.is_initialized()
    assert vdist.all_reduce_mean(2.5) == 2.5
    t = torch.tensor([1.0, 3.0])
    assert torch.equal(vdist.all_reduce_mean(t), t) and vdist.all_reduce_mean(t) is not t


def test_bad_distributed_environment():
    os.environ.update(RANK="0", WORLD_SIZE="2", LOCAL_RANK="0")
    os.environ.pop("MASTER_ADDR", None)
    os.environ.pop("MASTER_PORT", None)
    with pytest.raises(ValueError, match="WORLD_SIZE=2 but MASTER_ADDR and MASTER_PORT not set"):
        vdist.init_distributed("cpu")
    os.environ.update(RANK="2")
    with pytest.raises(ValueError, match="RANK=2 is outside"):
        vdist.init_distributed("cpu")


# ---------------------------------------------------------------------------------- launch.local


def test_local_two_cpu_processes(tmp_path):
    cfg = make_cfg(tmp_path, "run.name=ddp")
    assert launch_local(cfg, ["cpu", "cpu"], train_fn=record_to_file) is None
    records = read_records(cfg, 2)
    assert [r["rank"] for r in records] == [0, 1]
    for r in records:
        assert r["world_size"] == 2 and r["group_world_size"] == 2  # a real gloo group of two
        assert r["local_rank"] == r["rank"] and r["device"] == "cpu"
        assert r["is_main"] == (r["rank"] == 0)
        assert r["mean_rank"] == 0.5 and r["mean_vec"] == [0.5, 1.0]
        assert r["run_name"] == "ddp" and r["num_workers"] == cfg.data.num_workers
        assert r["root_level"] == (logging.INFO if r["rank"] == 0 else logging.WARNING)
    assert records[0]["master_port"] == records[1]["master_port"] is not None
    assert all(r["nccl_nvls"] == "0" for r in records)  # NVLink multicast off by default


def test_a_users_nccl_setting_is_kept(tmp_path):
    os.environ["NCCL_NVLS_ENABLE"] = "1"
    cfg = make_cfg(tmp_path, "run.name=nvls")
    launch_local(cfg, ["cpu", "cpu"], train_fn=record_to_file)
    assert [r["nccl_nvls"] for r in read_records(cfg, 2)] == ["1", "1"]


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 GPUs")
def test_local_two_gpu_processes(tmp_path):
    cfg = make_cfg(tmp_path, "run.name=nccl")
    launch_local(cfg, ["cuda:0", "cuda:1"], train_fn=record_to_file)
    records = read_records(cfg, 2)
    assert [(r["rank"], r["device"], r["group_world_size"]) for r in records] == [(0, "cuda:0", 2), (1, "cuda:1", 2)]
    assert all(r["mean_rank"] == 0.5 and r["mean_vec"] == [0.5, 1.0] for r in records)


def test_local_single_and_debug_run_in_this_process(tmp_path):
    seen = []

    def train(cfg, dist):
        seen.append((cfg, dist, os.environ.get("WORLD_SIZE")))
        return {"loss": 1.0}

    cfg = make_cfg(tmp_path)
    assert launch_local(cfg, ["cpu"], train_fn=train) == {"loss": 1.0}
    assert launch_local(cfg, ["cpu", "cpu"], debug=True, train_fn=train) == {"loss": 1.0}
    (cfg1, dist1, ws1), (cfg2, dist2, ws2) = seen
    assert cfg1 == cfg and dist1 == dist2 == vdist.DistInfo(0, 1, 0, torch.device("cpu")) and ws1 == ws2 == "1"
    assert cfg2.data.num_workers == 0 and cfg.data.num_workers > 0  # debug: no loader workers, cfg untouched
    assert "WORLD_SIZE" not in os.environ  # restored


def test_local_main_parses_arguments(tmp_path, monkeypatch):
    seen = []

    def fake_launch_local(cfg, devices, debug=False, train_fn=None, allow_config_change=False):
        seen.append((cfg, devices, debug, allow_config_change))

    monkeypatch.setattr("launch.local.launch_local", fake_launch_local)
    local_main(["--fname", str(MAIN_CONFIG), "--set", f"run.folder={tmp_path}", "data.batch_size=2",
                "--devices", "cpu", "cpu", "--debug", "--threads", "3", "--allow-config-change"])
    (cfg, devices, debug, allow), = seen
    assert devices == ["cpu", "cpu"] and debug and cfg.data.batch_size == 2
    assert cfg.run.threads == 3 and allow


def test_local_main_reports_config_errors(capsys):
    with pytest.raises(SystemExit) as e:
        local_main(["--fname", str(MAIN_CONFIG), "--set", "optim.warmup_step=3", "--devices", "cpu"])
    assert e.value.code == 2
    assert "did you mean 'optim.warmup_steps'" in capsys.readouterr().err


@pytest.mark.parametrize("launcher", ["local", "submitit"])
@pytest.mark.parametrize("overrides, message", [
    (["model.name=videomamba_tinny"], "'model.name' = 'videomamba_tinny' is not a registered model"),
    (["masks.1.aspect_ratio=[1.5, 0.75]"], "masks[1]: kind 'multiblock': parameter 'aspect_ratio'"),
    (["data.dataset=video", "data.train=[missing.csv]"], "'data.train' item 0: File list 'missing.csv'"),
])
def test_launchers_refuse_a_bad_config_before_building_or_queueing(tmp_path, monkeypatch, capsys, launcher,
                                                                     overrides, message):
    def never(*args, **kwargs):
        raise AssertionError("the launcher went past its config")

    for name in ("launch_local", "submit"):
        monkeypatch.setattr(f"launch.{launcher}.{name}", never, raising=False)
    main = local_main if launcher == "local" else launch_submitit.main
    with pytest.raises(SystemExit) as e:
        main(["--fname", str(MAIN_CONFIG), "--set", f"run.folder={tmp_path / 'run'}", *overrides])
    errors = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(errors) == 1 and message in errors[0]
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------- launch.submitit


def test_executor_parameters_from_config_and_flags(tmp_path):
    cfg = make_cfg(tmp_path, "launch.partition=learn", "launch.mem_gb=0")
    cfg = apply_launch_flags(cfg, {"nodes": 2, "tasks_per_node": 4, "gpus_per_node": 4, "time_min": 90,
                                   "account": "proj", "partition": None})
    params = executor_parameters(cfg.launch, cfg.run.name)
    assert params == {"name": "vjepa_tiny", "nodes": 2, "tasks_per_node": 4, "gpus_per_node": 4,
                      "cpus_per_task": cfg.launch.cpus_per_task, "timeout_min": 90, "slurm_signal_delay_s": 120,
                      "slurm_partition": "learn", "slurm_account": "proj"}  # mem 0: not requested
    with pytest.raises(ConfigError, match=r"command-line flags --nodes 0: 'launch.nodes' = 0 is out of range"):
        apply_launch_flags(cfg, {"nodes": 0})
    with pytest.raises(ConfigError, match="must equal 'launch.gpus_per_node' = 2"):
        apply_launch_flags(cfg, {"gpus_per_node": 2})


def test_no_sbatch_runs_locally(tmp_path, monkeypatch, capsys):
    seen = []
    monkeypatch.setattr(launch_submitit, "launch_local", lambda cfg, devices, **kw: seen.append((cfg, devices)))
    monkeypatch.setattr(launch_submitit, "default_devices", lambda: ["cpu"])
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on PATH
    launch_submitit.main(["--fname", str(MAIN_CONFIG), "--set", f"run.folder={tmp_path}/r", "--nodes", "3"])
    assert capsys.readouterr().out.strip() == "No SLURM found (no sbatch on PATH): running locally on cpu"
    (cfg, devices), = seen
    assert devices == ["cpu"] and cfg.run.folder == f"{tmp_path}/r" and cfg.launch.nodes == 3


def test_local_flag_wins_over_slurm(tmp_path, monkeypatch, capsys):
    seen = []
    monkeypatch.setattr(launch_submitit, "launch_local", lambda cfg, devices, **kw: seen.append(devices))
    monkeypatch.setattr(launch_submitit, "default_devices", lambda: ["cuda:0", "cuda:1"])
    monkeypatch.setenv("PATH", f"{fake_slurm_bin(tmp_path)}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SBATCH_COPY", str(tmp_path / "never.sh"))
    launch_submitit.main(["--fname", str(MAIN_CONFIG), "--local"])
    assert capsys.readouterr().out.strip() == "--local: running locally on cuda:0, cuda:1"
    assert seen == [["cuda:0", "cuda:1"]] and not (tmp_path / "never.sh").exists()


def test_submits_to_slurm_with_requeue(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", f"{fake_slurm_bin(tmp_path)}{os.pathsep}{os.environ['PATH']}")
    script = tmp_path / "submitted.sh"
    monkeypatch.setenv("SBATCH_COPY", str(script))
    launch_submitit.main([
        "--fname", str(MAIN_CONFIG), "--set", f"run.folder={tmp_path}/run",
        "--nodes", "2", "--tasks-per-node", "4", "--gpus-per-node", "4", "--cpus-per-task", "6", "--mem-gb", "64",
        "--partition", "learn", "--account", "proj", "--time", "90", "--constraint", "h100", "--qos", "high"])

    job_folder = tmp_path / "run" / "slurm" / "4242"
    assert capsys.readouterr().out.strip() == (
        f"Submitted job 4242 (2 node(s) x 4 task(s)); logs in {job_folder}")
    sbatch = script.read_text().splitlines()
    for line in ["--job-name=vjepa_tiny", "--nodes=2", "--ntasks-per-node=4", "--gpus-per-node=4",
                 "--cpus-per-task=6", "--mem=64GB", "--partition=learn", "--account=proj", "--time=90",
                 "--constraint=h100", "--qos=high", "--signal=USR2@120",
                 f"--output={tmp_path}/run/slurm/%j/%j_0_log.out"]:
        assert f"#SBATCH {line}" in sbatch, line
    assert sbatch[-1].startswith(f"srun --unbuffered --output {tmp_path}/run/slurm/%j/%j_%t_log.out")

    # What SLURM will run: our checkpointable job, holding the resolved config.
    submission = pickle.loads((job_folder / "4242_submitted.pkl").read_bytes())
    job = submission.function
    assert isinstance(job, TrainingJob) and job.train_fn is None
    assert job.cfg.launch.nodes == 2 and job.cfg.run.folder == f"{tmp_path}/run"
    assert (submission._timeout_min, submission._timeout_countdown) == (90, job.cfg.launch.max_timeouts)
    requeued = job.checkpoint()
    assert isinstance(requeued, DelayedSubmission) and isinstance(requeued.function, TrainingJob)
    assert requeued.function.cfg == job.cfg and requeued.args == () and requeued.kwargs == {}


def test_make_executor_writes_under_slurm_folder(tmp_path):
    cfg = make_cfg(tmp_path, "launch.slurm_folder=" + str(tmp_path / "logs"))
    executor = make_executor(cfg, cluster="debug")
    assert Path(executor.folder) == tmp_path / "logs" / "%j"


def test_submitted_job_trains_through_submitit(tmp_path):
    """submitit's debug executor runs the job in this process, exactly as a SLURM task would call it."""
    calls = []

    def train(cfg, dist):
        calls.append((cfg, dist))
        return {"loss": 0.5}

    cfg = make_cfg(tmp_path, "launch.gpus_per_node=0")  # a CPU job: this machine may have no GPU
    job = submit(cfg, cluster="debug", train_fn=train)
    assert job.result() == {"loss": 0.5}
    (cfg_seen, dist), = calls
    assert cfg_seen == cfg and dist == vdist.DistInfo(0, 1, 0, torch.device("cpu"))


def _slurm_task(rank: int, port: int, cfg: Config) -> None:
    """One SLURM task of a 2-task job on one node, as submitit's srun would start it."""
    os.environ.update(
        SUBMITIT_EXECUTOR="slurm", SLURM_JOB_ID="4242", SLURM_NTASKS="2", SLURM_JOB_NUM_NODES="1",
        SLURM_NODEID="0", SLURM_PROCID=str(rank), SLURM_LOCALID=str(rank), SLURM_JOB_NODELIST="localhost",
        MASTER_PORT=str(port))
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR"):
        os.environ.pop(k, None)
    TrainingJob(cfg, train_fn=record_to_file)()


def test_slurm_tasks_form_a_process_group(tmp_path):
    cfg = make_cfg(tmp_path, "launch.gpus_per_node=0", "launch.tasks_per_node=2")
    mp.spawn(_slurm_task, args=(vdist.find_free_port(), cfg), nprocs=2, join=True, start_method="spawn")
    records = read_records(cfg, 2)
    assert [(r["rank"], r["world_size"], r["group_world_size"]) for r in records] == [(0, 2, 2), (1, 2, 2)]
    assert all(r["mean_rank"] == 0.5 and r["device"] == "cpu" for r in records)


def train_then_get_preempted(cfg: Config, dist: vdist.DistInfo) -> dict:
    """The real trainer, with SLURM's preemption signal arriving during step 2."""
    from vjm.train.engine import Trainer

    trainer = Trainer(cfg, dist)
    step = trainer.optimizer_step

    def step_with_preemption(batches):
        if trainer.step == 1:
            os.kill(os.getpid(), signal.SIGUSR2)  # in the middle of the step: after its first batch is read
        return step(batches)

    trainer.optimizer_step = step_with_preemption
    return trainer.fit()


def test_preemption_saves_the_finished_step_then_requeues(tmp_path, toy_cfg_dict):
    """Under submitit, USR2 stops training after the current step; once latest.pt holds it,
    submitit's handler runs (it calls job.checkpoint() and requeues)."""
    from vjm.config import config_from_dict

    cfg = config_from_dict(toy_cfg_dict)
    job = TrainingJob(cfg, train_fn=train_then_get_preempted)
    seen = []

    def submitit_handler(signum, frame):
        seen.append((signum, torch.load(cfg.run_dir / "latest.pt", weights_only=True)["step"], job.checkpoint()))

    previous = signal.signal(signal.SIGUSR2, submitit_handler)
    try:
        assert job() is None
    finally:
        signal.signal(signal.SIGUSR2, previous)
    (signum, saved_step, requeued), = seen
    assert signum == signal.SIGUSR2 and saved_step == 2
    assert isinstance(requeued, DelayedSubmission) and requeued.function.cfg == cfg


# ------------------------------------------------------------------------------- a rank that dies


@pytest.mark.slow
def test_sigkill_of_one_rank_stops_the_run_and_the_same_command_resumes_exactly(tmp_path, toy_cfg_dict):
    """Rank 1 of two gloo processes is killed with SIGKILL mid-run: the launcher exits non-zero
    within a minute (the other rank is stopped, not left in a collective), and the same command
    resumes both ranks from the last checkpoint to the losses of an uninterrupted run."""
    from test_train import read_losses, write_config

    def command(name):
        raw = copy.deepcopy(toy_cfg_dict)
        raw["run"]["folder"] = str(tmp_path / name)
        raw["train"].update(checkpoint_every=3, log_every=1)
        return write_config(raw, tmp_path / f"{name}.yaml"), tmp_path / name

    def launcher(config, log):
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
        return subprocess.Popen([sys.executable, "-m", "launch.local", "--fname", str(config), "--devices", "cpu",
                                 "cpu"], cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, text=True)

    reference, reference_dir = command("reference")
    assert launcher(reference, tmp_path / "reference.log").wait(timeout=300) == 0
    expected = read_losses(reference_dir)

    config, run_dir = command("run")
    log = tmp_path / "run.log"
    proc = launcher(config, log)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:  # right after the step-3 checkpoint
        if (run_dir / "latest.pt").exists() and (run_dir / "log.csv").exists() and max(read_losses(run_dir)) >= 4:
            break
        time.sleep(0.05)
    assert proc.poll() is None, f"the run ended before a rank could be killed:\n{log.read_text()}"
    pids = dict(re.findall(r"rank (\d+) (\d+)", re.search(r"process ids: (.*)", log.read_text()).group(1)))
    os.kill(int(pids["1"]), signal.SIGKILL)
    killed = time.time()
    code = proc.wait(timeout=90)
    out = log.read_text()
    assert code == 128 + signal.SIGKILL and time.time() - killed < 60, out
    assert f"rank 1 (process {pids['1']}) died (SIGKILL); the other ranks were stopped" in out
    assert 3 <= torch.load(run_dir / "latest.pt", weights_only=True)["step"] < 10

    assert launcher(config, log).wait(timeout=300) == 0, log.read_text()
    assert "resumed from" in log.read_text()
    assert read_losses(run_dir) == expected  # both ranks continued exactly


def test_ranks_wait_for_each_other_after_the_last_step_and_a_failed_rank_leaves_at_once(tmp_path, monkeypatch):
    import launch

    calls = []
    monkeypatch.setattr(vdist.dist, "is_initialized", lambda: True)
    monkeypatch.setattr(vdist.dist, "barrier", lambda: calls.append("barrier"))
    monkeypatch.setattr(vdist.dist, "destroy_process_group", lambda: calls.append("leave"))
    monkeypatch.setattr(launch, "use_threads", lambda *args, **kwargs: None)
    cfg = make_cfg(tmp_path)
    assert launch.run_training(cfg, "cpu", train_fn=lambda cfg, dist: "trained") == "trained"
    assert calls == ["barrier", "leave"]  # a rank still saving its checkpoint keeps its connections

    def fails(cfg, dist):
        raise ValueError("a bad batch")

    calls.clear()
    with pytest.raises(ValueError, match="a bad batch"):
        launch.run_training(cfg, "cpu", train_fn=fails)
    assert calls == ["leave"]  # the others may never reach a barrier
