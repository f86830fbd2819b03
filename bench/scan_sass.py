"""Registers, spills and instruction mix of the scan kernels, compiled for a GPU that need not be here.

    python bench/scan_sass.py                          # sm_90, the settings scan_triton uses
    python bench/scan_sass.py --set BWD_CHANNELS_PER_THREAD=4 --arch 80
    python bench/scan_sass.py --slow-math              # tl.exp2 / tl.log / '/' instead of MUFU asm
    python bench/scan_sass.py --kernels backward

Triton compiles for a named target without a driver, and its wheel carries ptxas, cuobjdump and
nvdisasm: this runs on a CPU-only machine. For each kernel variant the VideoMamba-Ti training
step launches (bf16 u, delta, z; fp32 B, C laid out as scan_triton.prepare leaves them; z, D,
delta bias, softplus) it prints registers per thread, stack bytes (spills), and the instruction
mix of every loop body in the SASS: the inner loops are what the kernel executes per step, so
their instruction counts are a cost model that needs no GPU time. The specialisations mirror
what Triton's launcher would see at the bench shapes (pointers and L, strides multiples of 16;
B and C's state stride 1). Timings still need the GPU (bench/scan.py).
"""

from __future__ import annotations

import argparse
import collections
import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BF16_POINTERS = {"u_ptr", "delta_ptr", "z_ptr", "out_ptr", "dout_ptr", "du_ptr", "ddelta_ptr", "dz_ptr"}
MULTIPLES_OF_16 = {"E", "L", "seg_len", "stride_b", "stride_e", "stride_bb", "stride_bl", "stride_cb",
                   "stride_cl"}
FLAGS = dict(HAS_D=True, HAS_Z=True, HAS_BIAS=True, SOFTPLUS=True, REVERSE=False, VEC=8, A_LOG=True)
KERNELS = ("forward-local", "forward", "backward")
INSTRUCTION = re.compile(r"\s*/\*([0-9a-f]{4,})\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_]*)")


def argument_type(name: str) -> str:
    if name.endswith("_ptr"):
        return "*bf16" if name in BF16_POINTERS else "*fp32"
    return "i64" if name.startswith("stride") else "i32"


def compile_kernel(kernel, constants: dict, arch: int, num_warps: int = 1):
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    names = list(kernel.arg_names)
    signature = {n: "constexpr" if n in constants else argument_type(n) for n in names}
    attrs = {(i,): [["tt.divisibility", 16]] for i, n in enumerate(names)
             if signature[n].startswith("*") or n in MULTIPLES_OF_16}
    source = ASTSource(kernel, signature, {(names.index(k),): v for k, v in constants.items()}, attrs)
    return triton.compile(source, target=GPUTarget("cuda", arch, 32), options=dict(num_warps=num_warps))


def nvidia_tool(name: str) -> str:
    import triton

    return str(Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / name)


def resources(cubin: Path) -> str:
    out = subprocess.run([nvidia_tool("cuobjdump"), "--dump-resource-usage", str(cubin)],
                         capture_output=True, text=True, check=True).stdout
    return " ".join(re.findall(r"(REG:\d+|STACK:\d+|SHARED:\d+|LOCAL:\d+)", out))


def loop_bodies(sass: str) -> list[tuple[int, collections.Counter]]:
    """(instruction count, opcode histogram) of each backward branch's body: the loops."""
    lines = sass.splitlines()
    labels = {line.strip()[:-1]: i for i, line in enumerate(lines) if re.match(r"\s*\.L_x_\d+:", line)}
    bodies = []
    for i, line in enumerate(lines):
        branch = re.search(r"\bBRA\b.*?(\.L_x_\d+)", line)
        if branch and labels.get(branch.group(1), i) < i:
            ops = [m.group(2) for m in map(INSTRUCTION.match, lines[labels[branch.group(1)]:i + 1]) if m]
            bodies.append((len(ops), collections.Counter(ops)))
    return bodies


def report(name: str, compiled, workdir: Path) -> None:
    cubin = workdir / f"{name}.cubin"
    cubin.write_bytes(compiled.asm["cubin"])
    sass = subprocess.run([nvidia_tool("nvdisasm"), "-c", str(cubin)], capture_output=True, text=True,
                          check=True).stdout
    total = sum(1 for line in sass.splitlines() if INSTRUCTION.match(line))
    print(f"\n{name}: {resources(cubin)}, {total} instructions")
    for count, ops in loop_bodies(sass):
        if count > 8:  # skip the tiny spin loops at the kernel's end
            print(f"  loop of {count:5d}: " + ", ".join(f"{op} {n}" for op, n in ops.most_common(12)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", type=int, default=90, help="compute capability x 10 (90: H100)")
    parser.add_argument("--set", nargs="*", default=[], help="scan_triton settings, e.g. BWD_CHANNELS_PER_THREAD=4")
    parser.add_argument("--slow-math", action="store_true", help="compile without the MUFU fast paths")
    parser.add_argument("--kernels", nargs="+", choices=KERNELS, default=list(KERNELS))
    parser.add_argument("--workdir", default="/tmp/vjm_scan_sass", help="where the cubins are written")
    args = parser.parse_args()

    import triton.language as tl

    from vjm.ops import scan_triton, scan_triton_kernels, triton_math

    for item in args.set:
        key, _, value = item.partition("=")
        if not hasattr(scan_triton, key) or not value.isdigit():
            raise SystemExit(f"--set: expected SETTING=integer with a scan_triton setting, got {item!r}")
        setattr(scan_triton, key, int(value))
    if args.slow_math:
        triton_math.FAST_MATH = tl.constexpr(False)
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    state = 16
    unit_strides = dict(stride_bn=1, stride_cn=1)
    common = dict(N=state, CHUNK=scan_triton.CHUNK, **FLAGS, **unit_strides)
    forward = dict(NP=state, BLOCK_E=scan_triton.BLOCK_E, T=scan_triton.FWD_TILE, **common)
    for local, kernel in ((True, "forward-local"), (False, "forward")):
        if kernel in args.kernels:
            constants = dict(forward, SAVE_STATES=not local, LOCAL=local)
            report(f"scan_fwd_kernel ({'LOCAL' if local else 'main'})",
                   compile_kernel(scan_triton_kernels.scan_fwd_kernel, constants, args.arch), workdir)
    if "backward" in args.kernels:
        backward = dict(scan_triton.split_layout(state), T=scan_triton.BWD_TILE, **common)
        report(f"scan_bwd_kernel ({backward['NI']} states x {backward['K']} channels per thread)",
               compile_kernel(scan_triton_kernels.scan_bwd_kernel, backward, args.arch), workdir)


if __name__ == "__main__":
    main()
