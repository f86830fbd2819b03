"""Promises of the training loop under stress: epochs that end, divergence that never reaches a
checkpoint, a clean stop on every signal, checkpoint writes that survive kills and full disks."""

import contextlib
import errno
import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from test_train import read_losses, run_launcher, tiny_config, write_config
from vjm.config import config_from_dict
from vjm.data import build_loader
from vjm.data.datasets import ClipDataset
from vjm.data.decoders import DecodeError
from vjm.data.sources import Sample, Source
from vjm.train.checkpoint import NoSpaceError, load_checkpoint, save_checkpoint
from vjm.train.distributed import DistInfo
from vjm.train.engine import Trainer, epoch_steps
from vjm.train.run_folder import record_config
from vjm.train.stopping import DivergenceError

ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def deadline(seconds: int):
    """Fail (instead of hanging the suite) when the block runs longer than `seconds`."""
    def expire(signum, frame):
        raise TimeoutError(f"still running after {seconds} s: the loop does not end")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def dead_pid() -> int:
    """The id of a process that has exited (and been reaped)."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


# ----------------------------------------------------------------------------- epochs that end


class FlakyClips(ClipDataset):
    """n tiny samples; those in `bad` fail to decode and are replaced by others (as bad videos are)."""

    def __init__(self, n: int, bad: set[int]):
        super().__init__([Source("fake", [Sample(f"{i}.mp4", 0) for i in range(n)])], transform=None)
        self.bad = bad

    def load(self, sample):
        if int(sample.path.split(".")[0]) in self.bad:
            raise DecodeError(sample.path, "corrupt")
        return torch.zeros(1, 1, 1, 1, 1)


def test_an_epoch_has_exactly_the_steps_its_loader_yields():
    """Over sample counts, batch sizes, processes, accumulation and bad files: every rank's loader
    yields the batches its sampler counts, all whole and as many on every rank, and the engine's
    epoch never asks for more of them than that."""
    for n, batch, world, bad in itertools.product(range(1, 14), (1, 2, 3, 5), (1, 2, 3), (False, True)):
        dataset = FlakyClips(n, {0, n // 2} if bad and n > 3 else set())
        yielded = []
        for rank in range(world):
            loader = build_loader(dataset, batch, rank=rank, world_size=world, seed=1, pin_memory=False)
            loader.sampler.set_epoch(2)
            sizes = [len(b["index"]) for b in loader]
            assert sizes == [batch] * loader.sampler.num_batches() == [batch] * len(loader), (n, batch, world, rank)
            loader.sampler.set_start(len(sizes) // 2)  # a resumed epoch yields the rest of them
            assert sum(1 for _ in loader) == len(sizes) - len(sizes) // 2
            yielded.append(len(sizes))
        assert len(set(yielded)) == 1, f"ranks would step apart: {yielded}"
        for accum in (1, 2, 3):
            if yielded[0] < accum:
                with pytest.raises(ValueError, match="fewer than optim.accum_steps"):
                    epoch_steps(yielded[0], accum, None, "here")
                continue
            steps = epoch_steps(yielded[0], accum, None, "here")
            assert steps * accum <= yielded[0] < (steps + 1) * accum
            assert epoch_steps(yielded[0], accum, 1, "here") == 1
            with pytest.raises(ValueError, match=f"train.steps_per_epoch={steps + 1} but an epoch has only {steps}"):
                epoch_steps(yielded[0], accum, steps + 1, "here")


def test_a_partial_last_batch_does_not_stall_the_run(tmp_path, toy_root):
    # 18 samples in batches of 4: four whole batches an epoch, the last two samples are left out.
    raw = tiny_config(tmp_path, toy_root, data={"toy_num_train": 18},
                      train={"steps_per_epoch": None, "epochs": 2, "checkpoint_every": 50})
    trainer = Trainer(config_from_dict(raw), DistInfo())
    with deadline(120):
        trainer.fit()
    assert trainer.step == trainer.total_steps == 8
    assert sorted(read_losses(trainer.run_dir)) == list(range(1, 9))
    state = load_checkpoint(trainer.latest)
    assert (state["step"], state["epoch"], state["data"]["epoch_batch"]) == (8, 1, 4)


# ----------------------------------------------------------------------------- divergence


def test_divergence_never_reaches_a_checkpoint_and_the_named_one_resumes(tmp_path, toy_root):
    def config(epochs, lr, folder="run"):
        return config_from_dict(tiny_config(tmp_path, toy_root, run={"folder": str(tmp_path / folder)},
                                            optim={"lr": lr, "start_lr": lr, "warmup_steps": 0},
                                            train={"epochs": epochs, "steps_per_epoch": 3, "checkpoint_every": 1}))

    # From scratch, a learning rate of 1e6 blows the weights up in the first update: nothing is saved.
    with pytest.raises(DivergenceError, match=r"update of step 1 grew the weight norm .* none written yet.*optim.lr=100000 to start again"):
        Trainer(config(2, 1e6, "scratch"), DistInfo()).fit()
    assert not (tmp_path / "scratch" / "latest.pt").exists()

    Trainer(config(1, 1e-3), DistInfo()).fit()  # three good steps
    good = load_checkpoint(tmp_path / "run" / "latest.pt")["models"]
    with pytest.raises(DivergenceError) as stop:
        Trainer(config(2, 1e6), DistInfo(), allow_config_change=True).fit()
    message = str(stop.value)
    assert "update of step 4" in message and "nothing saved" in message
    assert f"Last good checkpoint: {tmp_path / 'run' / 'latest.pt'} (step 3)" in message
    assert "--set optim.lr=100000 --allow-config-change to resume" in message
    kept = load_checkpoint(tmp_path / "run" / "latest.pt")
    assert kept["step"] == 3
    for name, weights in good.items():
        for key, value in weights.items():
            assert torch.equal(kept["models"][name][key], value), f"{name}.{key} changed"

    resumed = Trainer(config(2, 1e-4), DistInfo(), allow_config_change=True)  # the advised change
    result = resumed.fit()
    assert resumed.step == 6 and torch.isfinite(torch.tensor(result["loss"]))
    assert sorted(read_losses(tmp_path / "run")) == list(range(1, 7))


def test_a_nonfinite_optimizer_state_is_not_saved(tmp_path, toy_root):
    cfg = config_from_dict(tiny_config(tmp_path, toy_root, train={"epochs": 1, "steps_per_epoch": 2}))
    trainer = Trainer(cfg, DistInfo())
    trainer.fit()
    before = trainer.latest.read_bytes()
    next(iter(trainer.optimizer.state.values()))["exp_avg_sq"].fill_(float("inf"))
    with pytest.raises(DivergenceError, match=r"optimizer\.\d+\.exp_avg_sq holds non-finite values at step 2"):
        trainer.save()
    assert trainer.latest.read_bytes() == before


# ----------------------------------------------------------------------------- signals and kills


def signal_config(tmp_path: Path, toy_root: Path, name: str) -> dict:
    # checkpoint_every beyond the run: only a stop writes mid-run, so a saved step was not lost.
    return tiny_config(tmp_path / name, toy_root, data={"num_workers": 1}, train={"checkpoint_every": 50})


@pytest.fixture(scope="module")
def reference_losses(tmp_path_factory, toy_root):
    """Losses of an uninterrupted launcher run (its own process, as those it is compared with)."""
    tmp_path = tmp_path_factory.mktemp("reference")
    raw = signal_config(tmp_path, toy_root, "ref")
    out, _ = run_launcher(write_config(raw, tmp_path / "ref.yaml"), "--devices", "cpu").communicate(timeout=300)
    losses = read_losses(Path(raw["run"]["folder"]))
    assert sorted(losses) == list(range(1, 11)), out
    return losses


def wait_for_step(proc: subprocess.Popen, run_dir: Path, step: int) -> None:
    deadline_at = time.time() + 120
    while time.time() < deadline_at and proc.poll() is None:
        if (run_dir / "log.csv").exists() and max(read_losses(run_dir), default=0) >= step:
            return
        time.sleep(0.02)
    raise AssertionError(f"the run ended or stalled before step {step}:\n{proc.communicate()[0]}")


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR1, signal.SIGINT], ids=lambda s: s.name)
def test_a_signal_stops_after_the_step_with_a_checkpoint_and_the_run_resumes(tmp_path, toy_root, signum,
                                                                           reference_losses):
    raw = signal_config(tmp_path, toy_root, "run")
    config, run_dir = write_config(raw, tmp_path / "run.yaml"), Path(raw["run"]["folder"])
    proc = run_launcher(config, "--devices", "cpu")
    wait_for_step(proc, run_dir, 2)
    proc.send_signal(signum)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, out
    assert "Traceback" not in out, out
    saved = load_checkpoint(run_dir / "latest.pt")["step"]
    assert saved == max(read_losses(run_dir)) < 10  # every finished step is in the checkpoint
    assert out.splitlines()[-1] == (f"stopped by {signum.name} at step {saved} of 10; saved {run_dir / 'latest.pt'}. "
                                    "Run the same command to resume")

    out, _ = run_launcher(config, "--devices", "cpu").communicate(timeout=300)
    assert f"resumed from {run_dir / 'latest.pt'} at step {saved}" in out, out
    assert read_losses(run_dir) == reference_losses  # bit-identical to the uninterrupted run


SAVE_THEN_HANG = """
import io, os, sys, time, torch
real_save, saves = torch.save, []

def save_then_hang(obj, f, *args, **kwargs):
    if not (isinstance(obj, dict) and "format" in obj):
        return real_save(obj, f, *args, **kwargs)
    saves.append(obj["step"])
    if len(saves) == 1:
        return real_save(obj, f, *args, **kwargs)
    buffer = io.BytesIO()
    real_save(obj, buffer)
    f = open(f, "wb") if isinstance(f, (str, os.PathLike)) else f
    f.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])  # half a checkpoint, then the kill
    f.flush()
    open(os.environ["INSIDE_SAVE"], "w").close()
    time.sleep(600)

torch.save = save_then_hang
from launch.local import main
main(sys.argv[1:])
"""


@pytest.mark.slow
def test_a_kill_during_a_checkpoint_write_leaves_a_loadable_checkpoint_and_no_temporary_file(
        tmp_path, toy_root, reference_losses):
    raw = signal_config(tmp_path, toy_root, "run")
    raw["train"]["checkpoint_every"] = 3
    config, run_dir = write_config(raw, tmp_path / "run.yaml"), Path(raw["run"]["folder"])
    inside = tmp_path / "inside_save"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "INSIDE_SAVE": str(inside)}
    proc = subprocess.Popen([sys.executable, "-c", SAVE_THEN_HANG, "--fname", str(config), "--devices", "cpu"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline_at = time.time() + 120
    while not inside.exists() and proc.poll() is None and time.time() < deadline_at:
        time.sleep(0.02)
    assert inside.exists(), f"the second checkpoint write never started:\n{proc.communicate()[0]}"
    proc.kill()  # SIGKILL, inside the write of step 6
    proc.wait()
    assert [p.name for p in run_dir.glob(".latest.pt.tmp-*")] == [f".latest.pt.tmp-{proc.pid}"]
    assert load_checkpoint(run_dir / "latest.pt")["step"] == 3  # the previous checkpoint, intact

    out, _ = run_launcher(config, "--devices", "cpu").communicate(timeout=300)
    assert f"resumed from {run_dir / 'latest.pt'} at step 3" in out, out
    assert read_losses(run_dir) == reference_losses
    assert not list(run_dir.glob(".*.tmp-*")), "the dead writer's temporary file was left behind"


# ----------------------------------------------------------------------------- checkpoint files


def test_a_failed_write_leaves_no_temporary_file_and_stale_ones_are_removed(tmp_path, monkeypatch):
    path = tmp_path / "latest.pt"
    save_checkpoint({"step": 1}, path)
    stale, live = tmp_path / f".latest.pt.tmp-{dead_pid()}", tmp_path / f".latest.pt.tmp-{os.getppid()}"
    stale.write_bytes(b"half a checkpoint"), live.write_bytes(b"being written by a live process")

    def fail_midway(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise RuntimeError("writer crashed")

    monkeypatch.setattr(torch, "save", fail_midway)
    with pytest.raises(RuntimeError, match="writer crashed"):
        save_checkpoint({"step": 2}, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["latest.pt", live.name])
    assert load_checkpoint(path)["step"] == 1


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MB tmpfs (needs root and mount); skipped otherwise."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"could not mount a tmpfs: {done.stderr.strip()}")
    yield disk
    subprocess.run(["umount", str(disk)], check=True)


def test_a_full_disk_says_so_keeps_the_previous_checkpoint_and_frees_its_space(small_disk, tmp_path, toy_root):
    path = small_disk / "latest.pt"
    save_checkpoint({"step": 1, "w": torch.zeros(1000)}, path)
    with pytest.raises(NoSpaceError, match=rf"no space left on device \(needed about 4 MB at {path}\)") as error:
        save_checkpoint({"step": 2, "w": torch.zeros(2**20)}, path)
    assert error.value.errno == errno.ENOSPC
    assert [p.name for p in small_disk.iterdir()] == ["latest.pt"]
    assert load_checkpoint(path)["step"] == 1

    # A writer killed mid-write filled the disk; a new run removes its file and can write its config.
    (small_disk / f".latest.pt.tmp-{dead_pid()}").write_bytes(bytes(2**21 - 2**16))
    with pytest.raises(OSError, match="No space left"):
        (small_disk / "probe").write_bytes(bytes(2**17))
    (small_disk / "probe").unlink()
    cfg = config_from_dict(tiny_config(tmp_path, toy_root, run={"folder": str(small_disk)}))
    Trainer(cfg, DistInfo())
    assert not list(small_disk.glob(".*.tmp-*"))
    record_config(cfg, step=0)  # what the run writes once it has started: there is room for it now
    assert (small_disk / "config.yaml").is_file()
