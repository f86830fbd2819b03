"""Data-loading throughput: clips/s through the real training pipeline, PyAV vs decord.

Each clip is 16 frames every 4th frame of a 320p H.264 source (568x320, 30 fps, a key frame
every 2 s), random-resized-cropped and flipped to 224x224 and normalised, then batched by a
DataLoader with 1 and with N workers. Source videos are synthetic (a textured scene panned by
the camera, with moving blobs), written once to --data-dir (a temporary folder by default).

    python -m bench.data                      # from the repository root
    python -m bench.data --workers 1,8 --batches 40
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def make_source_video(path: Path, seconds: float, height: int, width: int, fps: int, seed: int) -> None:
    import av
    from PIL import Image

    rng = np.random.default_rng(seed)
    num_frames = int(seconds * fps)
    # A smooth texture four times the frame, panned across: content that compresses like real video.
    texture = np.stack(
        [np.asarray(Image.fromarray(rng.random((90, 160)).astype(np.float32)).resize((2 * width, 2 * height),
                                                                                   Image.BICUBIC)) for _ in range(3)],
        axis=-1,
    )
    texture = np.clip(texture * 255, 0, 255).astype(np.uint8)
    velocity = rng.uniform(-1.5, 1.5, size=2)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "23", "preset": "veryfast", "g": str(2 * fps)}
        for t in range(num_frames):
            y, x = (np.array([height, width]) / 2 + velocity * t).astype(int) % np.array([height, width])
            frame = texture[y : y + height, x : x + width].copy()
            cy, cx = int(height / 2 + height / 3 * np.sin(t / 15)), int(width / 2 + width / 3 * np.cos(t / 20))
            frame[max(cy - 30, 0) : cy + 30, max(cx - 30, 0) : cx + 30] = (255, 60, 30)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def prepare_sources(folder: Path, num_videos: int, seconds: float, height: int, fps: int) -> list[Path]:
    width = int(round(height * 16 / 9 / 2)) * 2
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(num_videos):
        path = folder / f"bench_{height}p_{seconds:g}s_{fps}fps_{i:03d}.mp4"
        if not path.is_file():
            print(f"writing source video {i + 1}/{num_videos}: {path.name} ({width}x{height})", flush=True)
            make_source_video(path, seconds, height, width, fps, seed=i)
        paths.append(path)
    return paths


def measure(videos: list[Path], folder: Path, decoder: str, workers: int, batch_size: int, batches: int,
            decoder_threads: int) -> float:
    from vjm.data import build_dataset, build_loader

    # One epoch covers the warm-up batches (one per worker) and the timed ones.
    num_samples = (batches + max(workers, 1)) * batch_size
    listing = folder / f"bench_{num_samples}.txt"
    listing.write_text("".join(f"{videos[i % len(videos)]} 0\n" for i in range(num_samples)))
    dataset = build_dataset(kind="video", paths=[listing], frames_per_clip=16, frame_step=4, crop_size=224,
                            training=True, decoder=decoder, decoder_threads=decoder_threads)
    loader = build_loader(dataset, batch_size=batch_size, num_workers=workers, seed=0)
    iterator = iter(loader)
    for _ in range(max(workers, 1)):  # start-up and the first batch of every worker
        next(iterator)
    start = time.perf_counter()
    clips = sum(next(iterator)["clips"].shape[0] for _ in range(batches))
    elapsed = time.perf_counter() - start
    del iterator
    return clips / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.data", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=None, help="where source videos are written (cached)")
    parser.add_argument("--num-videos", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each source video")
    parser.add_argument("--height", type=int, default=320, help="source height (16:9)")
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--decoders", default="pyav,decord")
    parser.add_argument("--workers", default=f"1,{os.cpu_count()}", help="comma-separated worker counts")
    parser.add_argument("--decoder-threads", type=int, default=1, help="threads per decoded video (0: auto)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--batches", type=int, default=10, help="timed batches per configuration")
    args = parser.parse_args()

    torch.set_num_threads(1)  # the main process only collates; workers do the work
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.data_dir or Path(tmp)
        videos = prepare_sources(folder, args.num_videos, args.seconds, args.height, args.fps)
        rows = []
        for decoder in args.decoders.split(","):
            for workers in (int(w) for w in args.workers.split(",")):
                rate = measure(videos, folder, decoder, workers, args.batch_size, args.batches, args.decoder_threads)
                rows.append((decoder, workers, rate))
                print(f"{decoder:>6} workers={workers:<3} {rate:7.1f} clips/s", flush=True)

    print()
    print(f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible; "
          f"torch {torch.__version__}")
    print(f"Clip: 16 frames, step 4, {args.height}p source -> random resized crop 224x224; "
          f"batch {args.batch_size}, {args.batches} timed batches, {args.decoder_threads} decoder thread(s)")
    print()
    print("| decoder | workers | clips/s | ms/clip (per worker) |")
    print("|---|---:|---:|---:|")
    for decoder, workers, rate in rows:
        print(f"| {decoder} | {workers} | {rate:.1f} | {1000 * max(workers, 1) / rate:.0f} |")


if __name__ == "__main__":
    main()
