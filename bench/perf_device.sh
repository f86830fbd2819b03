#!/usr/bin/env bash
# The throughput tables of issues 17, 18 and 20 on one GPU, where nothing survives the call: install
# the carried mamba-ssm / causal-conv1d wheels (.cudawheels/) and PyAV (.whl/), then run each section
# of `python -m bench.throughput` under its own time limit (a slow one cannot eat the rest), printing
# its Markdown and appending it to $OUT/perf.md (logs beside it).
#
#   OUT=/some/dir bench/perf_device.sh [SECTION...]     # default: every section, in this order
#
# The tables' headers name the commit: set VJM_COMMIT=<commit> where the copy's git metadata lags its
# files (the device tool's copy), else they read "<old commit>-dirty" (bench/commit.py).
# Sections and their timed limits in seconds: V-JEPA 110, MAE 70, ARM 85, supervised 70, GPU busy 55,
# small clips 70 (needs PyAV: the toy clips are generated first), slws 150 (SLWS's cost: the V-JEPA
# step at 16 x 224^2, batch 16, with rate 0 and 0.5 in turn, twice each). Each section first runs one
# untimed step of its rows, within the same limit, so that the Triton compiles of a fresh machine (minutes in all;
# they stopped every section of a first call at e69192f) fall outside the timed run; on a machine
# already warm that pass takes seconds. Pick the sections that fit a call of at most 10 minutes.
set -uo pipefail
out=${OUT:?set OUT to the folder that comes back}
# .cudawheels/ holds wheels, or an installed site folder as a split archive (cuda_site.tar.xz.part*).
if compgen -G ".cudawheels/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .cudawheels/*.whl \
        || echo "wheel install failed: the mamba_ssm stack rows will say why they are skipped"
    export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
elif compgen -G ".cudawheels/cuda_site.tar.xz.part*" >/dev/null; then
    mkdir -p /tmp/site && cat .cudawheels/cuda_site.tar.xz.part* | tar -xJ -C /tmp/site \
        || echo "site archive extraction failed: the mamba_ssm stack rows will say why they are skipped"
    export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
# PyAV (.whl/), if carried: the small-clip section generates and decodes the toy clips (mp4).
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl \
        || echo "PyAV install failed: the small-clip section will say why it stops"
    export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1
report=$out/perf.md
: > "$report"
common=(--frames 8 16 --scan-backends triton --steps 6 --warmup 2)

section() {  # section NAME SECONDS bench.throughput-args...
    local name=$1 limit=$2; shift 2
    # A fresh machine compiles each Triton kernel at its first use, minutes in all, which the
    # sections' limits do not allow for: one untimed step of the same rows first (COMPILE_FIRST=0: off).
    if [ "${COMPILE_FIRST:-1}" = 1 ]; then
        timeout -k 10 "$limit" python3 -m bench.throughput "$@" --steps 1 --warmup 1 --busy-steps 1 \
            --small-clip-steps 1 --small-clip-staged-steps 1 > "$out/$name.compile.log" 2>&1 \
            || echo "- section $name: its compile pass ended with exit code $? (see $name.compile.log)" | tee -a "$report"
    fi
    local started=$SECONDS
    timeout -k 10 "$limit" python3 -m bench.throughput "$@" > "$out/$name.log" 2>&1
    local rc=$?
    # The tables and the header lines, not tracebacks or warnings.
    grep -E '^(#|\||- skipped|Random clips|CUDA kernels|NVIDIA|[A-Z].*\| torch )' "$out/$name.log" | tee -a "$report"
    if [ $rc -ne 0 ]; then
        echo "- section $name ended with exit code $rc after $((SECONDS - started)) s (124: its $limit s limit); see $name.log" \
            | tee -a "$report"
    fi
    echo | tee -a "$report"
}

run_section() {
    case $1 in
        vjepa) section vjepa 110 --tables vjepa "${common[@]}" ;;
        mae) section mae 70 --tables mae "${common[@]}" ;;
        arm) section arm 85 --tables arm "${common[@]}" ;;
        supervised) section supervised 70 --tables supervised "${common[@]}" ;;
        busy) section busy 55 --tables busy --scan-backends triton --busy-frames 16 --steps 5 --warmup 2 --busy-steps 2 ;;
        small_clip) section small_clip 70 --tables small-clip --small-clip-steps 60 --small-clip-staged-steps 20 --warmup 3 ;;
        slws) section slws 150 --tables slws --scan-backends triton --busy-frames 16 --batch 16 --steps 15 --warmup 3 ;;
        *) echo "perf_device.sh: unknown section $1 (vjepa mae arm supervised busy small_clip slws)"; exit 2 ;;
    esac
}

# Sections named on the command line, in that order; all of them by default.
for name in "${@:-vjepa mae arm supervised busy small_clip slws}"; do
    for one in $name; do run_section "$one"; done
done
echo "perf_device.sh: $SECONDS s in all" | tee -a "$report"
