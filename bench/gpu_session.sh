#!/usr/bin/env bash
# One device session: build mamba-ssm and causal-conv1d for this GPU (or install a build brought
# along), run the GPU tests, time the encoder forward, the V-JEPA training step and the throughput
# comparison (issue: GPU fast path).
#   bash bench/gpu_session.sh OUT_DIR [build|install|tests|scan|forward|train|throughput ...]   (default: all)
#   profiling steps, not in the default: resources (registers, spills, host cost of a launch), ncu
#   (Nsight Compute sections of every scan kernel at VideoMamba-Ti's L 1568), sweep (backward settings)
# build: expects the source archives in .sdists/ and the wheel builder copied to
#   .sdists/build-cuda-wheels.sh; builds both packages side by side (about 7 minutes on an H100),
#   installs them, and leaves their unpacked contents in OUT_DIR as an xz tar in parts of at most
#   15 MB (the device's file limits; xz keeps both under the 64 MiB a call can carry).
# install: copy those parts into .cudawheels/, carry it, and this step unpacks them onto PYTHONPATH.
set -uo pipefail
out=${1:?output folder}; shift
steps=${*:-build tests scan forward train throughput}
mkdir -p "$out"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" | tee -a "$out/gpu.txt"
for step in $steps; do
  case $step in
    build)
      start=$(date +%s)
      for sdist in .sdists/mamba_ssm-*.tar.gz .sdists/causal_conv1d-*.tar.gz; do
        MAX_JOBS=8 WHEEL_DIR=/tmp/wheels bash .sdists/build-cuda-wheels.sh "$sdist" 2>&1 | tail -3 &
      done
      wait
      echo "both built in $(( $(date +%s) - start ))s" | tee "$out/build.txt"
      python3 -m pip install -q --no-deps /tmp/wheels/*.whl 2>&1 | tail -2
      ls -la /tmp/wheels | tee -a "$out/build.txt"
      mkdir -p /tmp/cuda_site && for w in /tmp/wheels/*.whl; do python3 -m zipfile -e "$w" /tmp/cuda_site; done
      tar cf - -C /tmp/cuda_site . | xz -T0 -6 | split -b 15M - "$out/cuda_site.tar.xz.part" ;;
    install)
      mkdir -p /tmp/cuda_site && cat .cudawheels/cuda_site.tar.xz.part* | tar xJf - -C /tmp/cuda_site
      export PYTHONPATH=$PYTHONPATH:/tmp/cuda_site ;;
    tests)
      # PyAV and submitit are not on the device: their modules fail to collect, the rest runs.
      python3 -m pytest -q -m gpu --continue-on-collection-errors tests/ 2>&1 | tail -40 | tee "$out/tests.txt" ;;
    scan)
      python3 bench/scan.py --backends triton mamba_ssm 2>&1 | tee "$out/scan.txt" ;;
    forward)
      python3 bench/forward.py --model videomamba_tiny --frames 16 --size 224 --backends torch mamba_ssm \
        --dtypes fp32 bf16 2>&1 | tee "$out/forward.txt" ;;
    train)
      for backend in mamba_ssm triton; do
        python3 -m bench.train_step --fname configs/vjepa_k400_tiny.yaml --set model.scan_backend=$backend \
          --find-max-batch 2>&1 | tee -a "$out/train_step.txt"
      done ;;
    resources)
      python3 bench/scan_profile.py --launch-overhead 2>&1 | tee "$out/resources.txt" ;;
    ncu)
      ncu_bin=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu | head -1)
      "$ncu_bin" --clock-control none -k regex:scan_ --section SpeedOfLight --section Occupancy \
        --section LaunchStats --section WarpStateStats --section SchedulerStats --section InstructionStats \
        --section SourceCounters python3 bench/scan_profile.py --shapes 32,384,1568 > "$out/ncu.txt" 2>&1
      tail -5 "$out/ncu.txt" ;;
    sweep)
      python3 bench/scan.py --backends triton mamba_ssm --dims 384 --lengths 1568 392 --layouts mixer \
        --triton-configs "" BWD_TILE=2 BWD_CHANNELS_PER_THREAD=2 BWD_CHANNELS_PER_THREAD=4 \
        BWD_STATE_LANES=8 CHUNK=128 2>&1 | tee "$out/sweep.txt" ;;
    throughput)
      python3 -m bench.throughput --scan-backends triton mamba_ssm --profile 2>&1 | tee "$out/throughput.txt" ;;
  esac
done
