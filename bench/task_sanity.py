"""Does a quality-benchmark task have headroom? A small supervised CNN, trained from scratch on the
task's own clips, as a sanity bound independent of vjm's encoders and engine.

    python -m bench.task_sanity --root data/bench/bench_v1_n512-256_t16_s64_fps8_seed0 --seeds 3

Each clip becomes 8 frames (every 2nd of 16, as the benchmark's probes take them) stacked as
channels, so the network sees motion as well as appearance (early fusion). Prints a table of
held-out top-1, mean ± std over seeds, beside chance. If this bound reads far above the encoders'
probes, the task can be learned from its clips and the encoders' training is what falls short.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import av
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from vjm.data.bench_tasks import NUM_CLASSES, TASKS


def read_split(root: Path, split: str, task: str, frames: int = 8, step: int = 2):
    """-> clips (N, frames * 3, H, W) in [0, 1], labels (N,)."""
    clips, labels = [], []
    listing = root / f"{split}_{task}.txt"
    for line in listing.read_text().splitlines():
        path, label = line.rsplit(maxsplit=1)
        with av.open(str(listing.parent / path)) as container:
            video = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
        video = video[: frames * step : step]  # (T, H, W, 3)
        clips.append(torch.from_numpy(video).permute(0, 3, 1, 2).reshape(-1, *video.shape[1:3]))
        labels.append(int(label))
    return torch.stack(clips).float() / 255.0, torch.tensor(labels)


class EarlyFusionCNN(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, width: int = 16):
        super().__init__()
        # A strided stem keeps it a few seconds an epoch on one CPU core at 64^2.
        stem = [nn.Conv2d(in_channels, width, 3, stride=2, padding=1), nn.BatchNorm2d(width), nn.ReLU()]
        layers, channels = stem, width
        for out in (width, 2 * width, 4 * width):
            layers += [nn.Conv2d(channels, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU(), nn.MaxPool2d(2)]
            channels = out
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


def train_and_score(train, val, num_classes: int, seed: int, epochs: int, batch_size: int = 64,
                    device: str = "cpu") -> float:
    torch.manual_seed(seed)
    (x, y), (xv, yv) = ((t.to(device) for t in pair) for pair in (train, val))
    model = EarlyFusionCNN(x.shape[1], num_classes).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.05)
    steps = epochs * -(-len(x) // batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=2e-3, total_steps=steps)
    for _ in range(epochs):
        model.train()
        for index in torch.randperm(len(x), device=device).split(batch_size):
            loss = F.cross_entropy(model(x[index]), y[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    model.eval()
    with torch.no_grad():
        predictions = torch.cat([model(chunk).argmax(dim=1) for chunk in xv.split(256)])
    return 100.0 * (predictions == yv).float().mean().item()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.task_sanity", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, required=True, help="a folder written by vjm.data.bench_tasks")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args(argv)
    print(f"| task | chance | small CNN, early fusion ({args.epochs} epochs; mean ± std over {args.seeds} seeds) "
          "| clips |")
    print("|---|---|---|---|")
    for task in args.tasks:
        started = time.monotonic()
        train, val = read_split(args.root, "train", task), read_split(args.root, "val", task)
        scores = [train_and_score(train, val, NUM_CLASSES[task], seed, args.epochs, device=args.device) for seed in range(args.seeds)]
        spread = statistics.stdev(scores) if len(scores) > 1 else 0.0
        print(f"| {task} | {100 / NUM_CLASSES[task]:.1f} | {statistics.mean(scores):.1f} ± {spread:.1f} "
              f"({', '.join(f'{s:.1f}' for s in scores)}) | {len(train[1])} / {len(val[1])} |"
              f"  ({time.monotonic() - started:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
