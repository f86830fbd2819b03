"""Which code a benchmark ran, for the headers of its tables."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def source_commit() -> str:
    """``VJM_COMMIT`` when set, else ``git describe --always --dirty`` of the repository: the commit,
    marked "-dirty" when the files differ from it. A copy whose git metadata lags its files (the
    device tool's) then reads "<old commit>-dirty" rather than naming code that did not run; pass the
    commit in ``VJM_COMMIT`` to name it."""
    if os.environ.get("VJM_COMMIT"):
        return os.environ["VJM_COMMIT"]
    try:
        return subprocess.run(["git", "describe", "--always", "--dirty"], cwd=REPO, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"
