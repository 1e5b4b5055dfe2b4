#!/usr/bin/env bash
# Speed benchmark on CPU: `eoc sample` against the Python eager sampler on the built-in
# Fashion-MNIST model (same weights, same settings, one run), batches 1, 8, 32, uncached and
# fora:3, fp32, medians of 3 runs, plus the cache hook's overhead (--whole-forward).
# Two tables: Python as it runs by default, and Python given the CPU runtime settings eoc gives
# itself (passive OpenMP waiting, OpenBLAS threads sleeping sooner, glibc heap kept on huge
# pages: the variables `eoc info` reports, src/model/runtime_env.cpp; freed memory kept in the
# heap: main()'s mallopt calls, given as glibc's variables), so the second ratio compares the
# samplers.
# Writes docs/benchmarks/speed_cpu{,_same_runtime}.{json,md}.
# Extra flags go to both runs of scripts/bench/bench_speed.py (e.g. --repeats 5 --batches 8).
# The CUDA table (DiT-XL/2-shaped model, bf16/TF32) is run by scripts/dev/gpu_check.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-/usr/bin/python3}
CKPT=${EOC_FMNIST_CKPT:-third_party/models/fmnist-dit-s4.pt}
[ -x build/eoc ] || scripts/dev/bootstrap.sh
[ -f "$CKPT" ] || { echo "bench_speed.sh: checkpoint '$CKPT' not found (set EOC_FMNIST_CKPT)" >&2; exit 2; }
common=(--eoc build/eoc --model third_party/models/fmnist-dit-s4.ts --checkpoint "$CKPT"
        --num-heads 3 --device cpu --batches 1,8,32 --caches none,fora:3 --dtypes fp32 --repeats 3)
"$PYTHON" scripts/bench/bench_speed.py "${common[@]}" --out docs/benchmarks/speed_cpu.json \
  --markdown docs/benchmarks/speed_cpu.md "$@"
read -r -a eoc_env < <(build/eoc info --json | "$PYTHON" -c \
  'import json, sys; print(" ".join(f"{k}={v}" for k, v in json.load(sys.stdin)["runtime_env"].items() if v))')
env "${eoc_env[@]}" MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=1073741824 \
  MALLOC_TOP_PAD_=67108864 "$PYTHON" scripts/bench/bench_speed.py "${common[@]}" \
  --out docs/benchmarks/speed_cpu_same_runtime.json --markdown docs/benchmarks/speed_cpu_same_runtime.md "$@"
