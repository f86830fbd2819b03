"""The one device-to-host read of a training step.

On a GPU every read of a tensor's value by the host (item, float(t), `if t:`) waits until the
device has finished all the work queued before it, and the next launches wait with it. What the
host must know about a step (whether the loss is finite on every process, whether a process
received a stop signal, the gradient norm, the metrics, the weight norm after the previous
update) is therefore gathered into one small tensor, whose flags are reduced across processes in
one collective, and read once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as torch_dist


class MetricSums:
    """An objective's metrics summed over a step's micro-batches; tensors stay on the device."""

    def __init__(self) -> None:
        self.order: list[str] = []  # the objective's key order, kept for the log's columns
        self.tensor_keys: list[str] = []
        self.tensor_sum: torch.Tensor | None = None
        self.numbers: dict[str, float] = {}

    def add(self, metrics: dict[str, Any], weight: float) -> None:
        if not self.order:
            self.order = list(metrics)
            self.tensor_keys = [key for key, value in metrics.items() if isinstance(value, torch.Tensor)]
        for key, value in metrics.items():
            if not isinstance(value, torch.Tensor):  # a number the host already has
                self.numbers[key] = self.numbers.get(key, 0.0) + float(value) * weight
        if self.tensor_keys:
            values = torch.stack([metrics[key].detach().float().reshape(()) for key in self.tensor_keys]) * weight
            self.tensor_sum = values if self.tensor_sum is None else self.tensor_sum + values

    def device_values(self, device: torch.device) -> torch.Tensor:
        return self.tensor_sum if self.tensor_sum is not None else torch.zeros(0, device=device)

    def as_dict(self, tensor_values: list[float]) -> dict[str, float]:
        values = {**dict(zip(self.tensor_keys, tensor_values)), **self.numbers}
        return {key: values[key] for key in self.order}


@dataclass
class StepReport:
    finite: bool  # the loss was finite on every process
    loss: float  # this process's loss, summed over micro-batches (for the warning of a skipped step)
    stop: int | None  # a stop signal some process received, else None
    grad_norm: float
    weight_norm: float | None  # after the previous update, when one was pending
    metrics: dict[str, float]


def read_step(loss_sum: torch.Tensor, grad_norm: torch.Tensor, metrics: MetricSums,
              weight_norm: torch.Tensor | None, stop: int | None, distributed: bool) -> StepReport:
    """Everything the host needs about the step, in one collective and one read."""
    device = loss_sum.device
    nonfinite = (~torch.isfinite(loss_sum)).float().reshape(1)
    if distributed:  # every process must skip, or stop, together
        flags = torch.cat([nonfinite, torch.full((1,), float(stop or 0), device=device)])
        torch_dist.all_reduce(flags, op=torch_dist.ReduceOp.MAX)
    else:
        flags = nonfinite
    norms = [grad_norm.float().reshape(1)] + ([] if weight_norm is None else [weight_norm.float().reshape(1)])
    values = torch.cat([flags, loss_sum.float().reshape(1), *norms, metrics.device_values(device)]).tolist()
    if distributed:
        (nonfinite_any, stop_any), rest = values[:2], values[2:]
        stop = int(stop_any) or None
    else:
        nonfinite_any, rest = values[0], values[1:]
    loss, grad, rest = rest[0], rest[1], rest[2:]
    weight = None
    if weight_norm is not None:
        weight, rest = rest[0], rest[1:]
    return StepReport(finite=nonfinite_any == 0, loss=loss, stop=stop, grad_norm=grad, weight_norm=weight,
                      metrics=metrics.as_dict(rest))
