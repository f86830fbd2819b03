#!/usr/bin/env bash
# Pre-training recipes of the main job, side by side on one GPU: each recipe pre-trains
# configs/vjepa_tiny.yaml (bench.quality --set ...), then its frozen target and context encoders
# are probed on both toy tasks. The `base` recipe (the main job as configured) also probes the
# random-init control.
#   bash bench/quality_sweep.sh OUT_DIR [PROBE_KEY=VALUE ...]    (8 to 10 minutes on one H100, 16 cores)
# PROBE_KEY=VALUE pairs go to both probes (bench.quality --probe-set), e.g. a larger toy set:
#   bash bench/quality_sweep.sh /tmp/sweep data.toy_num_train=2048 data.toy_num_val=1024
# Each recipe logs to OUT_DIR/NAME.log; its table is OUT_DIR/NAME/quality_*.md. docs/QUALITY.md
# keeps the recipes and the tables of each sweep run so far.
set -uo pipefail
out=${1:?output folder}; shift
probe_sets=("$@")
mkdir -p "$out"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
declare -A RECIPES=(   # name -> steps and --set overrides of configs/vjepa_tiny.yaml
  [base]="128"
  [steps256]="256"
  [cov1]="128 objective.context_cov_weight=1.0"
  [lr15]="128 optim.lr=1.5e-3"
  [no_vicreg_ema998]="128 objective.context_var_weight=0 objective.context_cov_weight=0 optim.ema_momentum=[0.998,1.0]"
)
# Make the toy sets once (pre-training's, and the probes' if they are set), before the recipes race to make them.
python3 - "${probe_sets[@]}" <<'PY'
import sys
from vjm.data.toy import ensure_toy_dataset
sets = dict(arg.split("=", 1) for arg in sys.argv[1:])
ensure_toy_dataset("data/toy", 512, 256, 16, 64, 0)
ensure_toy_dataset("data/toy", int(sets.get("data.toy_num_train", 512)), int(sets.get("data.toy_num_val", 256)), 16, 64, 0)
PY
for name in "${!RECIPES[@]}"; do
  encoders="target"; [ "$name" = base ] && encoders="target context random"
  words=()
  while IFS= read -r w; do [ -n "$w" ] && words+=("$w"); done < <(
    python3 -c "import shlex, sys; print('\n'.join(shlex.split(sys.argv[1])))" "${RECIPES[$name]}")
  (
    args=(--budget large --steps "${words[0]}" --device cuda --encoders $encoders --out "$out/$name")
    [ ${#words[@]} -gt 1 ] && args+=(--set "${words[@]:1}")
    [ ${#probe_sets[@]} -gt 0 ] && args+=(--probe-set "${probe_sets[@]}")
    python3 -m bench.quality "${args[@]}"
  ) > "$out/$name.log" 2>&1 &
done
wait
for f in "$out"/*/quality_*.md; do echo "== $f"; cat "$f"; done
