"""Where samples come from: V-JEPA-style file lists and class-per-folder trees.

A *source* is one entry of a dataset's ``paths``: either a text file with one ``path label`` per
line, or a directory laid out as ``root/<class>/<file>``. Each source becomes a list of
:class:`Sample` records; several sources are concatenated and can be mixed with weights.
"""

from __future__ import annotations

import logging
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from torchvision.datasets.folder import find_classes, make_dataset

from .errors import MissingDataError

logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


@dataclass(frozen=True)
class Sample:
    path: str
    label: int


class SampleTable:
    """Samples packed into numpy arrays: paths as one UTF-8 buffer plus offsets, labels as int64.

    DataLoader workers are forked from the main process; reading a list of millions of Python
    objects touches their reference counts and copies every page into every worker. Plain
    arrays are read without being copied.
    """

    def __init__(self, samples: Sequence[Sample]):
        encoded = [s.path.encode("utf-8") for s in samples]
        self._buffer = np.frombuffer(b"".join(encoded), dtype=np.uint8)
        self._ends = np.cumsum([len(e) for e in encoded], dtype=np.int64)
        self.labels = np.array([s.label for s in samples], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> Sample:
        if not -len(self) <= index < len(self):
            raise IndexError(f"sample {index} is out of range for {len(self)} samples")
        index %= len(self)
        start = int(self._ends[index - 1]) if index > 0 else 0
        path = self._buffer[start : int(self._ends[index])].tobytes().decode("utf-8")
        return Sample(path, int(self.labels[index]))

    def __iter__(self) -> Iterator[Sample]:
        return (self[i] for i in range(len(self)))


@dataclass(frozen=True)
class Source:
    """The samples read from one list file or folder."""

    name: str
    samples: list[Sample]


def read_file_list(list_path: str | os.PathLike) -> list[Sample]:
    """Read ``path label`` lines (space- or comma-separated, as in V-JEPA's csv lists).

    The label is the last field, so paths may contain spaces. Blank lines and lines starting with
    ``#`` are ignored. Relative paths are resolved against the list's own directory, so a dataset
    folder together with its lists can be moved as a whole.
    """
    list_path = Path(list_path)
    base = list_path.parent
    samples = []
    for path, label in _list_entries(list_path):
        samples.append(Sample(path if os.path.isabs(path) else str(base / path), label))
    return samples


def check_source(path: str | os.PathLike) -> str | None:
    """Why ``path`` cannot be a data source, or None: what a config checks before any work starts.

    A file list is read through (every line must parse); a folder only needs class sub-folders,
    since listing every file of a large tree is the dataset's job, not the config's.
    """
    if os.path.isdir(path):
        with os.scandir(path) as entries:
            if not any(entry.is_dir() for entry in entries):
                return f"folder {str(path)!r} has no class sub-folders; expected root/<class>/<file>"
        return None
    try:
        for _ in _list_entries(Path(path)):
            pass
    except (FileNotFoundError, ValueError) as e:
        return str(e)
    return None


# Bytes read to tell a text list from a binary file (a video or an archive given by mistake).
_SNIFF_BYTES = 8192


def _list_entries(list_path: Path) -> Iterator[tuple[str, int]]:
    """The (path as written, label) of each sample line of a file list; errors name the file and line."""
    if not list_path.is_file():
        where = "" if list_path.is_absolute() else f" (relative to {os.getcwd()})"
        raise FileNotFoundError(f"File list {str(list_path)!r}{where} does not exist (or is not a file).")
    found = False
    with open(list_path, "rb") as f:
        _refuse_binary(list_path, f.read(_SNIFF_BYTES))
        f.seek(0)
        for line_number, raw in enumerate(f, start=1):
            line = _decode(raw, list_path, line_number).strip()
            if not line or line.startswith("#"):
                continue
            parsed = _split_path_label(line)
            if parsed is None:
                raise ValueError(
                    f"{list_path}:{line_number}: expected 'path label' with an integer label, "
                    f"space- or comma-separated; got {line!r}."
                )
            found = True
            yield parsed
    if not found:
        raise ValueError(f"File list {str(list_path)!r} holds no samples.")


def _not_text(list_path: Path, line_number: int) -> ValueError:
    return ValueError(
        f"{list_path}:{line_number}: not UTF-8 text. A file list holds 'path label' lines of text; "
        "this looks like a binary file (a video or an archive given as a list?)."
    )


def _refuse_binary(list_path: Path, head: bytes) -> None:
    # A NUL byte never occurs in text; checking the head spares reading a whole video as one "line".
    nul = head.find(b"\0")
    if nul >= 0:
        raise _not_text(list_path, head.count(b"\n", 0, nul) + 1)


def _decode(raw: bytes, list_path: Path, line_number: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _not_text(list_path, line_number) from None


def _split_path_label(line: str) -> tuple[str, int] | None:
    # Comma first: in "a b.mp4,3" the comma separates; in "a,b.mp4 3" the comma is part of the path.
    for separator in (",", None):
        fields = line.rsplit(separator, 1)
        if len(fields) == 2:
            try:
                return fields[0].strip(), int(fields[1])
            except ValueError:
                continue
    return None


def read_folder(root: str | os.PathLike, extensions: tuple[str, ...]) -> list[Sample]:
    """Read ``root/<class>/<file>``; labels are the class folders' indices in sorted order."""
    root = str(root)
    try:
        _, class_to_idx = find_classes(root)
    except FileNotFoundError as e:
        raise FileNotFoundError(
            f"Folder {root!r} has no class sub-folders; expected root/<class>/<file> ({e})."
        ) from None
    found = make_dataset(root, class_to_idx, extensions=extensions, allow_empty=True)
    if not found:
        raise FileNotFoundError(
            f"Folder {root!r} has class folders but no files ending in any of {extensions}."
        )
    return [Sample(path, label) for path, label in found]


def read_sources(paths: Sequence[str | os.PathLike], extensions: tuple[str, ...]) -> list[Source]:
    """Read each entry of ``paths``: a directory is a class-folder tree, anything else a list."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    if not paths:
        raise ValueError("No data paths given: pass at least one file list or folder.")
    sources = []
    for path in paths:
        if os.path.isdir(path):
            samples = read_folder(path, extensions)
        else:
            samples = read_file_list(path)
        logger.info("Data source %s: %d samples", path, len(samples))
        sources.append(Source(str(path), samples))
    return sources


def sample_weights(sources: Sequence[Source], weights: Sequence[float] | None) -> np.ndarray | None:
    """Per-sample weights that give each source its share ``weights[i] / sum(weights)``."""
    if weights is None:
        return None
    if len(weights) != len(sources):
        raise ValueError(
            f"Got {len(weights)} dataset weights for {len(sources)} data paths; "
            "give one weight per path."
        )
    if any(not w > 0 for w in weights):
        raise ValueError(f"Dataset weights must be positive, got {list(weights)}.")
    return np.concatenate(
        [np.full(len(source.samples), float(weight) / len(source.samples)) for weight, source in zip(weights, sources)]
    )


def check_paths_exist(
    sources: Sequence[Source], max_checked: int = 1000, max_missing_fraction: float = 0.5, seed: int = 0
) -> None:
    """Fail early when a source's paths are mostly missing (a wrong root or a stale list).

    Checks up to ``max_checked`` paths per source (all of them when ``max_checked < 0``) so that
    lists of millions of files on a network file system start quickly. A few missing files are
    only a warning: they are skipped, counted and reported when reached.
    """
    if max_checked == 0:
        return
    rng = random.Random(seed)
    for source in sources:
        samples = source.samples
        if 0 < max_checked < len(samples):
            samples = rng.sample(samples, max_checked)
        missing = [s.path for s in samples if not os.path.isfile(s.path)]
        if not missing:
            continue
        fraction = len(missing) / len(samples)
        examples = ", ".join(repr(p) for p in list(dict.fromkeys(missing))[:5])  # a list may repeat a path
        if fraction > max_missing_fraction:
            raise MissingDataError(
                f"{len(missing)} of {len(samples)} checked paths from {source.name!r} do not exist, "
                f"e.g. {examples}. Check the list's paths or the data root."
            )
        logger.warning(
            "%d of %d checked paths from %s do not exist (they will be skipped), e.g. %s",
            len(missing), len(samples), source.name, examples,
        )
