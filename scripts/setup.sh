#!/usr/bin/env bash
# One-time setup on a fresh machine: Fashion-MNIST from Debian, a venv in .venv, shc built and installed editable.
# Idempotent: a second run only re-checks. Usage: bash scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
apt_install() {  # quiet; refreshes the package lists only when the first try fails
  $SUDO apt-get install -y -q "$@" >/dev/null 2>&1 \
    || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q "$@" >/dev/null; }
}
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || apt_install dataset-fashion-mnist
# the retrieval gallery's browser test (tests/test_inference.py) drives Debian's chromium through playwright
command -v chromium >/dev/null || apt_install chromium

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
if ! python -c "import torch, torchvision, numba, pybind11, pytest" >/dev/null 2>&1; then
  python -m pip install -q --upgrade pip setuptools wheel
  # torch/torchvision pinned: the CUDA build that also runs on the CPU (and brings triton).
  python -m pip install -q torch==2.14.1 torchvision==0.29.1
  python -m pip install -q pybind11 numpy
fi
python -m pip install -q --no-build-isolation -e ".[train,dev,export]"
# bytecode now, as a wheel install would: the source tree is imported in place, and where the environment sets
# PYTHONDONTWRITEBYTECODE every shc-eval start would otherwise recompile the package (~20 ms)
python -m compileall -q shc kernels >/dev/null
# the MDS / SHC center kernels (Numba) compile once per install, ~15 s: now, not in the first run's stage 2
python -c "import shc.centers as c; c.kernels_compiled() or c.compile_kernels()"
echo "shc set up in $(pwd)/.venv"
