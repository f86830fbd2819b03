"""Submit pre-training to SLURM through submitit, or run it here when there is no SLURM.

    python -m launch.submitit --fname configs/vjepa_tiny.yaml [--set optim.lr=1e-3 ...] [--threads N]
        [--nodes 2 --tasks-per-node 8 --gpus-per-node 8 --cpus-per-task 10 --mem-gb 480
         --partition learn --account proj --time 4320 --constraint h100 --qos high] [--local]

Resources come from the config's ``launch`` section; the flags override it. The job is a
checkpointable callable: when SLURM preempts it or its time runs out, submitit's signal (USR2)
makes training stop after its current step and save <run folder>/latest.pt, then submitit
requeues the job, which resumes from there: a preemption loses no finished step. Without ``sbatch``/``srun`` on PATH, or with --local,
the same training runs on this machine through launch.local (one process per visible GPU, or the CPU).
A run folder whose checkpoint was trained with another recipe is refused before the job is queued
(--allow-config-change continues it with the change).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import shutil
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import submitit
from submitit.helpers import DelayedSubmission

from launch import USER_ERRORS, TrainFn, add_config_args, config_from_args, run_training
from launch.local import default_devices, launch_local
from vjm.config import Config, LaunchConfig, config_from_dict
from vjm.console import debug_requested, error_line, setup_logging
from vjm.train.run_folder import check_run_folder
from vjm.train.stopping import STOP, RunHalted, TrainingStopped

logger = logging.getLogger(__name__)

__all__ = ["TrainingJob", "build_parser", "executor_parameters", "find_slurm", "main", "make_executor", "submit"]

# Command-line flag -> key of the config's launch section.
FLAGS = {
    "nodes": ("--nodes", int), "tasks_per_node": ("--tasks-per-node", int), "gpus_per_node": ("--gpus-per-node", int),
    "cpus_per_task": ("--cpus-per-task", int), "mem_gb": ("--mem-gb", float), "partition": ("--partition", str),
    "account": ("--account", str), "time_min": ("--time", int), "constraint": ("--constraint", str),
    "qos": ("--qos", str),
}


_LAUNCH_HELP = {f.name: f.metadata["help"] for f in dataclasses.fields(LaunchConfig)}


class TrainingJob:
    """What each SLURM task runs. Picklable; checkpointable, so that preemption or timeout requeues it."""

    def __init__(self, cfg: Config, train_fn: TrainFn | None = None, allow_config_change: bool = False) -> None:
        self.cfg = cfg
        self.train_fn = train_fn
        self.allow_config_change = allow_config_change

    def __call__(self) -> Any:
        """Train. submitit's preemption signal stops training after its step with a checkpoint; then
        submitit's own handler for it runs (rank 0: `checkpoint()`, requeue, exit)."""
        device = "cuda" if self.cfg.launch.gpus_per_node > 0 else "cpu"
        preemption = getattr(signal, "SIG" + submitit.JobEnvironment.USR_SIG)
        requeue = signal.getsignal(preemption)  # submitit's checkpoint-and-requeue handler, under submitit
        try:
            with STOP.catching([preemption], take_over=True):
                return run_training(self.cfg, device, self.train_fn, allow_config_change=self.allow_config_change)
        except TrainingStopped as stop:
            if stop.signum != preemption or not callable(requeue):
                raise
            logger.warning("%s", stop)
            requeue(preemption, None)
            return None

    def checkpoint(self, *args: Any, **kwargs: Any) -> DelayedSubmission:
        """Called by submitit on rank 0 at preemption/timeout, once training has saved: requeue a fresh
        copy of this job, which resumes from <run folder>/latest.pt."""
        logger.warning("job preempted or out of time: requeueing; training resumes from %s",
                       self.cfg.run_dir / "latest.pt")
        return DelayedSubmission(TrainingJob(self.cfg, self.train_fn, self.allow_config_change))


def find_slurm() -> str | None:
    """None when SLURM can be used from here, else why not (for the one-line message)."""
    for tool in ("sbatch", "srun"):
        if shutil.which(tool) is None:
            return f"no {tool} on PATH"
    return None


def executor_parameters(launch: LaunchConfig, job_name: str) -> dict[str, Any]:
    """submitit.AutoExecutor.update_parameters arguments for the launch section."""
    params: dict[str, Any] = {
        "name": job_name,
        "nodes": launch.nodes,
        "tasks_per_node": launch.tasks_per_node,
        "gpus_per_node": launch.gpus_per_node,
        "cpus_per_task": launch.cpus_per_task,
        "timeout_min": launch.time_min,
        # USR2 arrives this long before the time limit: room for submitit to requeue.
        "slurm_signal_delay_s": 120,
    }
    if launch.mem_gb > 0:
        params["mem_gb"] = launch.mem_gb
    for key in ("partition", "account", "constraint", "qos"):
        if getattr(launch, key) is not None:
            params[f"slurm_{key}"] = getattr(launch, key)
    return params


def make_executor(cfg: Config, cluster: str = "slurm") -> submitit.AutoExecutor:
    """An executor with the run's resources; cluster 'slurm', or submitit's 'local'/'debug' for tests."""
    folder = Path(cfg.launch.slurm_folder).absolute() / "%j"
    executor = submitit.AutoExecutor(folder=folder, cluster=cluster, slurm_max_num_timeout=cfg.launch.max_timeouts)
    executor.update_parameters(**executor_parameters(cfg.launch, cfg.run.name))
    return executor


def submit(cfg: Config, cluster: str = "slurm", train_fn: TrainFn | None = None,
           allow_config_change: bool = False) -> submitit.Job:
    """Submit the run as one job of launch.nodes x launch.tasks_per_node tasks; returns the submitit Job."""
    return make_executor(cfg, cluster).submit(TrainingJob(cfg, train_fn, allow_config_change))


def apply_launch_flags(cfg: Config, flags: dict[str, Any]) -> Config:
    """The config with its launch section overridden by the given (already typed) values, re-validated."""
    flags = {k: v for k, v in flags.items() if v is not None}
    if not flags:
        return cfg
    d = cfg.to_dict()
    d["launch"].update(flags)
    where = "command-line flags " + " ".join(f"{FLAGS[k][0]} {v}" for k, v in flags.items())
    return config_from_dict(d, where)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m launch.submitit", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(parser)
    group = parser.add_argument_group("SLURM resources (override the config's launch section)")
    for key, (flag, kind) in FLAGS.items():
        group.add_argument(flag, dest=key, type=kind, default=None,
                           help=_LAUNCH_HELP[key])
    parser.add_argument("--local", action="store_true", help="run on this machine even if SLURM is available")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(0)
    try:
        cfg = config_from_args(args)
        cfg = apply_launch_flags(cfg, {key: getattr(args, key) for key in FLAGS})
        check_run_folder(cfg, args.allow_config_change)
    except USER_ERRORS as e:
        parser.exit(2, error_line(e))

    missing = None if args.local else find_slurm()
    if args.local or missing is not None:
        devices = default_devices()
        why = "--local" if args.local else f"No SLURM found ({missing})"
        print(f"{why}: running locally on {', '.join(devices)}", flush=True)
        try:
            launch_local(cfg, devices, allow_config_change=args.allow_config_change)
        except USER_ERRORS as e:  # met while training: the data, or a checkpoint this config cannot resume
            if debug_requested():
                raise
            parser.exit(2, error_line(e))
        except RunHalted as halt:
            parser.exit(halt.exit_code, f"{halt}\n")
        return
    job = submit(cfg, allow_config_change=args.allow_config_change)
    print(f"Submitted job {job.job_id} ({cfg.launch.nodes} node(s) x {cfg.launch.tasks_per_node} task(s)); "
          f"logs in {job.paths.folder}", flush=True)


if __name__ == "__main__":
    main()
