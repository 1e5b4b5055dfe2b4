#!/usr/bin/env bash
# The one prepared run on a lent GPU machine (PyTorch 2.x with its LibTorch and CUDA, no Debian
# packages, no network). It
#   1. builds eoc against pip's LibTorch, the header-only libraries coming from .headers/
#      (made here by `scripts/dev/gpu_check.sh --prepare`, which copies them from Debian's packages);
#   2. checks that the built-in model (exported by Debian's PyTorch 1.13) loads and samples on
#      CUDA, against the CPU path and the Python reference;
#   3. runs the speed benchmark on a DiT-XL/2-shaped random model (scripts/bench/bench_speed.py;
#      batch 64 first, the size issue #8's bars name), bf16 and then TF32;
#   4. checks an FID shard run, then runs the cache benchmark on the Fashion-MNIST model on CUDA
#      (scripts/bench/bench_cache.py).
# Parts run in that order, most needed first. Each has its own time limit, cut to what is left
# of the whole run's budget (GPU_CHECK_SECONDS, default 540: one device call may last 600 s),
# so a slow part costs the parts after it, never the results already written to $OUT.
set -u
cd "$(dirname "$0")/../.."
if [ "${1:-}" = "--prepare" ]; then
  rm -rf .headers && mkdir -p .headers
  cp -r /usr/include/CLI /usr/include/spdlog /usr/include/fmt /usr/include/nlohmann .headers/
  cp /usr/include/stb/stb_image_write.h /usr/include/stb/stb_image.h .headers/
  echo "prepared .headers/ (carry it to the GPU machine)"
  exit 0
fi
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
BUDGET_END=$(( $(date +%s) + ${GPU_CHECK_SECONDS:-540} ))
log() { echo "[$(date +%T)] $*" | tee -a "$OUT/steps.log"; }
part() {  # part SECONDS NAME COMMAND...: runs with a limit, logs to $OUT/NAME.log
  local limit=$1 name=$2 left=$(( BUDGET_END - $(date +%s) ))
  shift 2
  if [ "$left" -lt 15 ]; then
    log "skip $name: ${left}s of the budget left"
    return
  fi
  [ "$left" -lt "$limit" ] && limit=$left
  log "start $name (limit ${limit}s)"
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
  log "end $name: exit $?"
}

log "machine: $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>&1 | head -1)"
$PY -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)' >>"$OUT/steps.log" 2>&1
TORCH_PREFIX=$($PY -c 'import torch;print(torch.utils.cmake_prefix_path)')

part 240 build bash -c "cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DEOC_BUILD_TESTS=OFF \
  -DCMAKE_PREFIX_PATH='$TORCH_PREFIX' -DEOC_HEADER_DIR='$PWD/.headers' && cmake --build build-gpu -j\$(nproc)"
EOC=build-gpu/eoc
[ -x "$EOC" ] && [ -x build-gpu/eoc-torch ] || { log "no binary; stopping"; exit 1; }

part 75 load_check bash -c "
  set -x
  $EOC info
  $EOC -q sample --device cuda --sampler ddim --steps 20 --cfg-scale 1.5 --num-samples 16 --out-raw $OUT/cuda.npy --out $OUT/grid_cuda.png --report $OUT/report_cuda.json
  $EOC -q sample --device cpu --sampler ddim --steps 20 --cfg-scale 1.5 --num-samples 16 --out-raw $OUT/cpu.npy
  $EOC -q sample --device cpu --seed-mode official --sampler ddpm --steps 50 --cfg-scale 4 --num-samples 4 --out-raw $OUT/cpu_official.npy
  $PY scripts/testing/reference_sampler.py --model third_party/models/fmnist-dit-s4.ts --seed-mode official --sampler ddpm --steps 50 --cfg-scale 4 --num-samples 4 --batch-size 4 --seed 0 --out-raw $OUT/ref_official.npy
  $PY -c \"import numpy as np; a=np.load('$OUT/cuda.npy'); b=np.load('$OUT/cpu.npy'); print('cuda vs cpu max|diff|', abs(a-b).max()); c=np.load('$OUT/cpu_official.npy'); d=np.load('$OUT/ref_official.npy'); print('cpu (LibTorch 2.x) vs reference max|diff|', abs(c-d).max())\"
"

XL=/tmp/dit-xl-2-random
part 120 make_xl bash -c "$PY scripts/testing/make_random_dit.py -o $XL.pt --depth 28 --hidden 1152 --patch 2 \
  --input-size 32 --in-channels 4 --num-classes 1000 && \
  $PY scripts/tools/export_dit.py $XL.pt -o $XL.ts --preset DiT-XL/2 --fused-attention && $EOC info --model $XL.ts"

part 220 bench_speed_bf16 $PY scripts/bench/bench_speed.py --eoc "$EOC" --model $XL.ts --checkpoint $XL.pt \
  --num-heads 16 --fused-attention --device cuda --dtypes bf16 --batches 64,256,8 \
  --caches none,fora:3 --steps 20 --repeats 2 --out "$OUT/bench_speed_cuda_bf16.json" \
  --markdown "$OUT/bench_speed_cuda_bf16.md"
part 90 bench_speed_tf32 $PY scripts/bench/bench_speed.py --eoc "$EOC" --model $XL.ts --checkpoint $XL.pt \
  --num-heads 16 --fused-attention --device cuda --dtypes fp32 --tf32 --batches 64,8 \
  --caches none,fora:3 --steps 20 --repeats 2 --out "$OUT/bench_speed_cuda_tf32.json" \
  --markdown "$OUT/bench_speed_cuda_tf32.md"
part 60 fid_check scripts/dev/gpu_check_fid.sh "$EOC" "$OUT"

part 170 bench_cache $PY scripts/bench/bench_cache.py --eoc "$EOC" --device cuda --samplers ddim20,ddpm50 \
  --images 64 --batch-size 64 --repeats 1 --work "$OUT/bench_cache_work" \
  --out "$OUT/bench_cache_cuda.json" --markdown "$OUT/bench_cache_cuda.md"
rm -rf "$OUT/bench_cache_work"/*.npy
log "done"
