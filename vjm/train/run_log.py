"""What a run reports: a console line with rate and ETA, a CSV file, TensorBoard scalars."""

from __future__ import annotations

import csv
import logging
import time
from collections.abc import Collection
from pathlib import Path

logger = logging.getLogger(__name__)


def format_duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


class RunLog:
    """Rank 0 writes; other ranks create a RunLog with enabled=False and it does nothing."""

    def __init__(self, run_dir: Path, total_steps: int, start_step: int, enabled: bool, tensorboard: bool):
        self.enabled, self.total_steps = enabled, total_steps
        self.csv_path = Path(run_dir) / "log.csv"
        self._start_time, self._start_step = time.time(), start_step
        self._writer = None
        if not enabled:
            return
        self._truncate_after(start_step)
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(Path(run_dir) / "tb"), purge_step=start_step + 1)

    def _truncate_after(self, step: int) -> None:
        """A resumed run repeats the steps after its checkpoint: drop their old rows."""
        if not self.csv_path.exists():
            return
        with self.csv_path.open(newline="") as f:
            rows = list(csv.DictReader(f))
        keep = [row for row in rows if int(row["step"]) <= step]
        if len(keep) != len(rows) and rows:
            with self.csv_path.open("w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(keep)

    def write(self, step: int, epoch: int, metrics: dict[str, float]) -> None:
        """A row of log.csv (and TensorBoard scalars); ``epoch`` counted from 1."""
        if not self.enabled:
            return
        row = {"step": step, "epoch": epoch, **metrics}
        self._append_csv(row)
        if self._writer is not None:
            for key, value in metrics.items():
                self._writer.add_scalar(f"train/{key}", value, step)
            self._writer.flush()

    def write_images(self, step: int, images: dict) -> None:
        """Pictures {name: (3, H, W) in [0, 1]} to TensorBoard as images/<name>."""
        if self._writer is None:
            return
        for name, picture in images.items():
            self._writer.add_image(f"images/{name}", picture, step)
        self._writer.flush()

    def _append_csv(self, row: dict) -> None:
        rows, fields = [], None
        if self.csv_path.exists():
            with self.csv_path.open(newline="") as f:
                fields = next(csv.reader(f), None)
        if fields is not None and set(row) <= set(fields):
            with self.csv_path.open("a", newline="") as f:
                csv.DictWriter(f, fieldnames=fields, restval="").writerow(row)
            return
        if fields is not None:  # a new metric appeared: rewrite with the union of columns
            with self.csv_path.open(newline="") as f:
                rows = list(csv.DictReader(f))
        fields = list(dict.fromkeys([*(fields or []), *row]))
        with self.csv_path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields, restval="")
            writer.writeheader()
            writer.writerows([*rows, row])

    def progress_line(self, step: int, epoch: int, epochs: int, metrics: dict[str, float],
                      clips_per_step: int, hidden: Collection[str] = ()) -> str:
        """One line: epoch (from 1), step, the metrics (but ``hidden`` ones, e.g. schedules), lr, rate, ETA."""
        elapsed = time.time() - self._start_time
        done = step - self._start_step
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (self.total_steps - step) / rate if rate > 0 else float("inf")
        shown = " ".join(f"{k} {v:.4g}" for k, v in metrics.items() if k not in hidden and k != "lr")
        return (f"epoch {epoch}/{epochs} step {step}/{self.total_steps} {shown} "
                f"lr {metrics.get('lr', 0):.3g} | {rate:.2f} it/s {rate * clips_per_step:.1f} clips/s "
                f"ETA {format_duration(eta) if rate > 0 else '?'}")

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
