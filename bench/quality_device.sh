#!/usr/bin/env bash
# The quality benchmark inside one time-limited call on a borrowed GPU machine, where nothing
# survives the call: install carried wheels (.whl/, e.g. PyAV), run `python -m evals.quality` under
# a time limit, then write the table of whatever finished and the small result files to $OUT.
#
#   OUT=/some/dir QUALITY_LIMIT_S=520 bench/quality_device.sh RESULTS_DIR [evals.quality args...]
#
# Locally: extract $OUT/results.tgz in the repository and rerun the same evals.quality command with
# --report-only to rebuild the table (pre-training and probes are skipped; nothing is recomputed).
set -uo pipefail
results=$1; shift
out=${OUT:?set OUT to the folder that comes back}
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1
timeout "${QUALITY_LIMIT_S:-520}" python3 -m evals.quality --out "$results" "$@" 2>&1 | tee "$out/quality.log"
python3 -m evals.quality --out "$results" "$@" --report-only 2>&1 | tail -n 40 > "$out/table.md"
# Small files only: probe results, run markers, training logs and the configs.
(cd "$results" && find . \( -name results.json -o -name pretrain_done.json -o -name log.csv -o -name "*.yaml" \
    -o -name "quality.*" -o -name "*.log" \) -print0 | tar czf "$out/results.tgz" --null -T -)
