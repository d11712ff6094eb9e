#!/bin/bash
# The one command for a lent GPU machine (device tool): build the engine there, run bench/gpu_check.py,
# then the engine's reference tests on that machine's CPU (often AVX-512 VPOPCNTDQ, which this dev box lacks).
#   bash bench/gpu_run.sh OUT_DIR
# Uses the machine's own python3 (torch + triton preinstalled); results land in OUT_DIR.
# Environment: GPU_CHECK_ARGS (e.g. "--only ranking"), SKIP_GPU_CHECK=1, SKIP_ENGINE_TESTS=1, and
# PIPELINE_DATA=DIR (a copy of the Fashion-MNIST .gz files, carried along): then the whole shc-train pipeline
# also runs on CUDA — a tiny synthetic job (stages 1-3, eager) and the default Fashion-MNIST job with
# --compile reduce-overhead and CSQ centers (stage 2's Numba compile would cost a minute of device time).
export PYTHONUNBUFFERED=1
OUT_DIR=${1:?usage: bash bench/gpu_run.sh OUT_DIR}
mkdir -p "$OUT_DIR"
{ nvidia-smi -L; nproc; grep -o -w -m1 -e avx512_vpopcntdq -e avx512bw /proc/cpuinfo | sort -u | tr '\n' ' '; echo
  python3 -c "import torch, triton, numpy; print('torch', torch.__version__, 'triton', triton.__version__, 'numpy', numpy.__version__)"
} 2>&1 | tee "$OUT_DIR/env.txt"
python3 setup.py -q build_ext --inplace -j "$(nproc)" > "$OUT_DIR/build.log" 2>&1 || { tail -30 "$OUT_DIR/build.log"; exit 1; }
export PYTHONPATH=$PWD
python3 -c "from shc import _engine; print('engine isa', _engine.isa(), 'threads', _engine.default_threads())" | tee -a "$OUT_DIR/env.txt"
[ "${SKIP_GPU_CHECK:-0}" = 1 ] || timeout "${GPU_CHECK_TIMEOUT:-330}" python3 bench/gpu_check.py "$OUT_DIR" $GPU_CHECK_ARGS 2>&1 | tee "$OUT_DIR/gpu_check.log" | cut -c1-800
[ "${SKIP_ENGINE_TESTS:-0}" = 1 ] || timeout "${ENGINE_TEST_TIMEOUT:-120}" python3 -m pytest -q -x -p no:cacheprovider tests/test_engine_metrics.py tests/test_engine_search.py tests/test_engine_gpu_routing.py \
  -n 8 2>&1 | tail -15 | tee "$OUT_DIR/engine_tests.log"
if [ -n "${PIPELINE_DATA:-}" ]; then  # runs under /tmp; only the logs and metrics.json come back (8 files at most)
  NUMBA_DISABLE_JIT=1 timeout 120 python3 -m shc.cli.train --dataset synthetic --device cuda \
    --data-option "sizes=(64,16,64)" --data-option image_size=32 --code_length 16 --epoch 2 --classify_epoch 2 \
    --test_map 1 --batch-size 32 --no-progress --out /tmp/pipeline_synthetic 2>&1 | tail -8 | tee "$OUT_DIR/pipeline_synthetic.log"
  { time timeout "${PIPELINE_TIMEOUT:-200}" python3 -m shc.cli.train --dataset fashion-mnist --data-root "$PIPELINE_DATA" \
    --device cuda --centers csq --compile reduce-overhead --no-progress --out /tmp/pipeline_fmnist; } 2>&1 | tail -25 \
    | tee "$OUT_DIR/pipeline_fmnist.log"
  cp /tmp/pipeline_fmnist/metrics.json "$OUT_DIR/pipeline_fmnist_metrics.json" 2>/dev/null
fi
