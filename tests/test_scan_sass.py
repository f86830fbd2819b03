"""bench/scan_sass.py compiles the scan kernels for sm_90 on a machine without a GPU; the
approximate-math paths (vjm/ops/triton_math.py) must shorten the kernels' inner loops."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from vjm.ops.backends import triton_import_error

REPO = Path(__file__).resolve().parents[1]
triton_missing = triton_import_error()


def inner_loop(tmp_path: Path, *flags: str) -> dict[str, int]:
    """Opcode counts of the LOCAL forward kernel's longest loop, compiled in a fresh process (the
    math switch is read when Triton first hashes the kernel)."""
    env = {**os.environ, "TRITON_CACHE_DIR": str(tmp_path / "cache"), "PYTHONPATH": str(REPO)}
    env.pop("TRITON_INTERPRET", None)
    out = subprocess.run([sys.executable, str(REPO / "bench" / "scan_sass.py"), "--kernels", "forward-local",
                          "--workdir", str(tmp_path), *flags], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert re.search(r"REG:\d+ STACK:\d+", out.stdout), out.stdout
    loops = re.findall(r"loop of +(\d+): (.*)", out.stdout)
    count, ops = max(loops, key=lambda loop: int(loop[0]))
    return {"total": int(count), **{op: int(n) for op, n in (item.split() for item in ops.split(", "))}}


@pytest.mark.skipif(triton_missing is not None, reason=f"{triton_missing}")
@pytest.mark.skipif(sys.platform != "linux", reason="Triton's bundled CUDA tools are Linux binaries")
def test_fast_math_shortens_the_forward_scan_loop_compiled_without_a_gpu(tmp_path):
    fast, slow = inner_loop(tmp_path / "fast"), inner_loop(tmp_path / "slow", "--slow-math")
    assert fast["total"] < 0.95 * slow["total"], (fast, slow)
    assert fast["MUFU"] > 0 and fast["FFMA"] > 0  # the loop is the scan's: exponentials and FMAs
