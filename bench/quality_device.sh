#!/usr/bin/env bash
# The quality benchmark on a borrowed GPU machine whose calls last at most 10 minutes: install carried
# wheels (.whl/, e.g. PyAV), start `python -m evals.quality` detached from the call (setsid), wait for
# it up to QUALITY_LIMIT_S seconds, then write the table of whatever finished and the small result
# files to $OUT. A benchmark longer than one call runs on while the machine is held: the same command
# in the next call (within the machine's idle release) finds it running, waits for it again and
# collects; it never starts a second copy.
#
#   OUT=/some/dir QUALITY_LIMIT_S=540 bench/quality_device.sh RESULTS_DIR [evals.quality args...]
#
# Its log is RESULTS_DIR.log (copied to $OUT/quality.log). QUALITY_STOP=1 ends a run still going once
# the wait is over (a last call). Locally: extract $OUT/results.tgz in the repository and rerun the
# same evals.quality command with --report-only to rebuild the table (nothing is recomputed).
set -uo pipefail
results=$1; shift
out=${OUT:?set OUT to the folder that comes back}
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1
mkdir -p "$(dirname "$results")"
pidfile=$results.pid log=$results.log

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

if running; then
    echo "quality_device.sh: the benchmark in $results is still running (pid $(cat "$pidfile")): waiting for it"
else
    setsid nohup python3 -m evals.quality --out "$results" "$@" > "$log" 2>&1 < /dev/null &
    echo $! > "$pidfile"
    echo "quality_device.sh: started the benchmark in $results (pid $!, log $log)"
fi
deadline=$((SECONDS + ${QUALITY_LIMIT_S:-520}))
while running && [ $SECONDS -lt $deadline ]; do sleep 5; done
if running; then
    if [ "${QUALITY_STOP:-0}" = 1 ]; then
        kill -- -"$(cat "$pidfile")" 2>/dev/null  # its process group: the pool and every job it started
        echo "quality_device.sh: stopped the benchmark (QUALITY_STOP=1); what finished is tabulated"
    else
        echo "quality_device.sh: still running; run the same command again to wait for it and collect"
    fi
fi
cp "$log" "$out/quality.log"
tail -n 5 "$log"
# The tables (stdout) whole; the report's own log lines (stderr) after the run's log.
python3 -m evals.quality --out "$results" "$@" --report-only > "$out/table.md" 2>> "$out/quality.log"
cat "$out/table.md"
# Small files only: probe results, run markers, training logs and the configs.
(cd "$results" && find . \( -name results.json -o -name pretrain_done.json -o -name log.csv -o -name "*.yaml" \
    -o -name "quality*.md" -o -name "quality*.json" -o -name "*.log" \) -print0 | tar czf "$out/results.tgz" --null -T -)
