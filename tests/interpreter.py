"""Run test code under Triton's interpreter, which exercises the Triton kernels on the CPU.

TRITON_INTERPRET must be set before triton is imported, so the code runs in a subprocess; it
prints its results as JSON on its last line.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_under_interpreter(script: str):
    """The JSON value that `script` prints last, run with the repository and tests/ importable."""
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}"}
    done = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])
