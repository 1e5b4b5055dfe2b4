#!/usr/bin/env bash
# FID-run checks that need a GPU, for a lent GPU machine (called from scripts/dev/gpu_check.sh
# or by hand; about a minute):
#   1. `--vae` decoding on CUDA equals decoding on the CPU (a random latent DiT and a random tiny
#      VAE in the diffusers layout, made and exported here);
#   2. a torchrun-style process (RANK=1, WORLD_SIZE=2, LOCAL_RANK=1) with `--device cuda` on a
#      machine with fewer GPUs picks cuda:(LOCAL_RANK % GPUs) and makes the odd indices.
#
#   scripts/dev/gpu_check_fid.sh EOC_BINARY OUT_DIR
# Prints one "fid-check: ..." line per result; exit status 1 when a check fails.
set -euo pipefail
EOC=$(realpath "$1")
OUT=$(realpath -m "$2")
PY=${PYTHON:-python3}
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
W="$OUT/fid-work"
mkdir -p "$W"
cd "$W"

"$PY" "$ROOT/scripts/testing/make_random_dit.py" -o dit.pt --depth 2 --hidden 64 --patch 2 --input-size 16 \
    --in-channels 4 --num-classes 10
"$PY" "$ROOT/scripts/tools/export_dit.py" dit.pt -o dit.ts --num-heads 4
"$PY" "$ROOT/scripts/testing/make_random_vae.py" -o vae.safetensors --block-out-channels 32,64,64
"$PY" "$ROOT/scripts/tools/export_vae.py" vae.safetensors -o vae.ts

common=(-q sample --model dit.ts --vae vae.ts --sampler ddim --steps 4 --num-samples 6
        --batch-size 3 --classes random --cfg-scale 1.5)
"$EOC" "${common[@]}" --device cpu --out-dir cpu
"$EOC" "${common[@]}" --device cuda --out-dir cuda
"$PY" - <<'EOF'
import glob
import numpy as np
from PIL import Image
a = np.stack([np.asarray(Image.open(p)) for p in sorted(glob.glob("cpu/*.png"))]).astype(int)
b = np.stack([np.asarray(Image.open(p)) for p in sorted(glob.glob("cuda/*.png"))]).astype(int)
diff = np.abs(a - b)
print(f"fid-check: vae cuda vs cpu: shape {a.shape}, max |diff| {diff.max()}, "
      f"equal pixels {100 * (diff == 0).mean():.2f}%")
assert a.shape == (6, 64, 64, 3) and diff.max() <= 8 and (diff <= 1).mean() > 0.99
EOF

RANK=1 WORLD_SIZE=2 LOCAL_RANK=1 "$EOC" sample --model dit.ts --vae vae.ts --sampler ddim \
    --steps 2 --num-samples 5 --device cuda --out-dir shard 2> shard.log
grep -o "local rank 1: --device cuda:[0-9]*" shard.log | sed 's/^/fid-check: /'
found=$(cd shard && ls ./*.png | tr '\n' ' ')
echo "fid-check: shard 1/2 wrote: $found"
[ "$found" = "./000001.png ./000003.png " ]
echo "fid-check: OK"
