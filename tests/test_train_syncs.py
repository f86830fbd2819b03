"""Host syncs of the training step. On a GPU every read of a tensor's value by the host (item,
tolist, float(t), `if t:`...) waits for the device to finish all queued work, which stalls the
pipeline of launches; the engine promises at most one such read per optimiser step away from
log and checkpoint steps. The CPU has no device, so the reads are counted instead."""

import contextlib
import traceback
from collections import Counter

import pytest
import torch

from test_train import tiny_config
from vjm.config import config_from_dict
from vjm.train.distributed import DistInfo
from vjm.train.engine import Trainer

# Tensor methods that hand a value to the host; on CUDA each one synchronises the stream.
READS = ("item", "tolist", "numpy", "cpu", "__float__", "__int__", "__bool__", "__index__")


# Reads of tensors that live on the host on a GPU run too: the data loader's (in worker processes),
# the CPU AdamW's step counts (on CUDA the engine's AdamW is fused, its counts on the device), and
# check_keep's value checks (made on CPU index tensors only).
HOST_ONLY = ("torch/utils/data/", "torch/optim/", "in check_keep")


@contextlib.contextmanager
def counting_reads():
    """Count value reads of tensors by the training step, by method, but those of HOST_ONLY."""
    counts: Counter = Counter()
    originals = {name: getattr(torch.Tensor, name) for name in READS}

    def counted(name, original):
        def read(self, *args, **kwargs):
            stack = "".join(traceback.format_stack(limit=40))
            if not any(place in stack for place in HOST_ONLY):
                counts[name] += 1
            return original(self, *args, **kwargs)
        return read

    for name, original in originals.items():
        setattr(torch.Tensor, name, counted(name, original))
    try:
        yield counts
    finally:
        for name, original in originals.items():
            setattr(torch.Tensor, name, original)


@pytest.mark.parametrize("accum", [1, 2])
def test_a_step_that_neither_logs_nor_saves_reads_the_device_once(tmp_path, toy_root, one_thread, accum):
    # Logs and checkpoints beyond the steps counted; clip_grad and the weight-growth bound on.
    cfg = config_from_dict(tiny_config(tmp_path, toy_root, optim={"accum_steps": accum, "clip_grad": 1.0},
                                       train={"epochs": 1, "steps_per_epoch": 4, "log_every": 100,
                                              "checkpoint_every": 100, "max_weight_growth": 10.0}))
    trainer = Trainer(cfg, DistInfo())
    batches = trainer.micro_batches()
    trainer.optimizer_step(batches)  # the first step builds lazy state (optimiser moments)
    for step in range(2, 4):
        with counting_reads() as counts:
            metrics = trainer.optimizer_step(batches)
        assert metrics is not None and trainer.step == step
        assert sum(counts.values()) == 1, f"step {step}: {dict(counts)}"
