#!/usr/bin/env bash
# The unit and gpu test layers on the lent GPU machine (one H200), on its own image: Python 3.12, torch 2.11
# (the ZeroGPU version requirements.txt resolves to), transformers 5.17, huggingface_hub 1.33, pytest, hypothesis,
# pytest-xdist, pytest-timeout; no gradio, gradio_client, spaces or datasets, and no network.
#
# 1. Here (the CPU machine), once, in the repository root: the wheels of what the image lacks and the unit
#    layer needs (datasets for the preference data; dill and multiprocess are datasets' needs the image lacks;
#    .whl/ is git-ignored and travels only when carried):
#      python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#        -d .whl datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19
#    (about 0.9 MB; `unzip -p .whl/datasets-*.whl '*/METADATA' | grep ^Requires-Dist` lists datasets' needs:
#    the others are in the image).
# 2. On the GPU machine (the device tool's run, carry [".whl"], timeout 600):
#      bash scripts/gpu_suite.sh
#    It installs the wheels under /tmp/site, prints the versions, runs tests/unit (in parallel when pytest-xdist
#    is there) and then tests/gpu (serially, -s: the timing tables), and writes the logs and JUnit XML to $OUT
#    (the device tool's output folder; test-artifacts/ elsewhere).
#
# Tests that need gradio, gradio_client or spaces skip themselves there with that reason (tests/unit/conftest.py);
# the app and browser layers need gradio and Chromium and run on the CPU machine (`make test`). Exit status: the
# worse of the two layers.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1
export GRADIO_ANALYTICS_ENABLED=False TOKENIZERS_PARALLELISM=false
PY=${PYTHON:-python3}
UNIT=${UNIT_TESTS:-tests/unit}  # overridable only to try the script itself on one file
GPU=${GPU_TESTS:-tests/gpu}
OUT=${OUT:-test-artifacts}
mkdir -p "$OUT"

if ! "$PY" -c "import datasets" 2>/dev/null; then
  if ! ls .whl/*.whl >/dev/null 2>&1; then
    echo "datasets is not installed and no wheels were carried in .whl/: see step 1 at the top of $0" >&2
    exit 2
  fi
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 2
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PY" - <<'PY' 2>&1 | tee "$OUT/gpu-suite-versions.txt"
import importlib, sys
import torch
print("python", sys.version.split()[0], "| torch", torch.__version__, "| cuda", torch.version.cuda,
      "|", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "NO CUDA DEVICE")
for name in ("transformers", "huggingface_hub", "safetensors", "tokenizers", "sentencepiece", "datasets", "numpy",
             "pytest", "gradio"):
    try:
        print(f"{name} {importlib.import_module(name).__version__}")
    except ImportError:
        print(f"{name} not installed")
PY

parallel=()
if "$PY" -c "import xdist" 2>/dev/null; then
  parallel=(-n 8 --dist loadfile)  # whole files per worker: module fixtures and torchrun ports stay in one process
fi
timeout_flag=()
if "$PY" -c "import pytest_timeout" 2>/dev/null; then
  timeout_flag=(--timeout 240)  # one stuck test must not eat the command's 10 minutes
fi

start=$(date +%s)
"$PY" -m pytest -q -rs -p no:cacheprovider "${parallel[@]}" "${timeout_flag[@]}" $UNIT \
  --junitxml "$OUT/gpu-suite-unit.xml" 2>&1 | tee "$OUT/gpu-suite-unit.log"
unit=${PIPESTATUS[0]}
echo "unit layer: exit $unit in $(( $(date +%s) - start )) s"

start=$(date +%s)
"$PY" -m pytest -q -rs -s -p no:cacheprovider "${timeout_flag[@]}" $GPU \
  --junitxml "$OUT/gpu-suite-gpu.xml" 2>&1 | tee "$OUT/gpu-suite-gpu.log"
gpu=${PIPESTATUS[0]}
echo "gpu layer: exit $gpu in $(( $(date +%s) - start )) s"

exit $(( unit > gpu ? unit : gpu ))
