#!/usr/bin/env bash
# One device session: build mamba-ssm for this GPU (once per machine), run the GPU tests, time the
# encoder forward (issue: foundation) and the V-JEPA training step (issue: main job).
#   bash bench/gpu_session.sh OUT_DIR [build|tests|forward|train ...]   (default: all)
# Expects the source archives in .sdists/ and the wheel builder copied to .sdists/build-cuda-wheels.sh.
set -uo pipefail
out=${1:?output folder}; shift
steps=${*:-build tests forward train}
mkdir -p "$out"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" | tee -a "$out/gpu.txt"
for step in $steps; do
  case $step in
    build)
      if ! python3 -c "import mamba_ssm" 2>/dev/null; then
        WHEEL_DIR=/tmp/wheels bash .sdists/build-cuda-wheels.sh .sdists/mamba_ssm-*.tar.gz 2>&1 | tail -3 | tee "$out/build.txt"
        python3 -m pip install -q --no-deps /tmp/wheels/mamba_ssm-*.whl 2>&1 | tail -2
      fi ;;
    tests)
      python3 -m pytest -q -m gpu tests/test_scan.py tests/test_models.py 2>&1 | tail -15 | tee "$out/tests.txt" ;;
    forward)
      python3 bench/forward.py --model videomamba_tiny --frames 16 --size 224 --backends torch mamba_ssm \
        --dtypes fp32 bf16 2>&1 | tee "$out/forward.txt" ;;
    train)
      for backend in mamba_ssm triton; do
        python3 -m bench.train_step --fname configs/vjepa_k400_tiny.yaml --set model.scan_backend=$backend \
          --find-max-batch 2>&1 | tee -a "$out/train_step.txt"
      done ;;
  esac
done
