#!/usr/bin/env bash
# Sets up and builds eoc (scripts/dev/bootstrap.sh), then samples a grid of images with the
# built-in Fashion-MNIST DiT (third_party/models/fmnist-dit-s4.ts): one row per class.
# Every sampling flag lives in DEMO_ARGS below; extra arguments are appended to it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

OUT="demo/grid.png"
DEMO_ARGS=(
    --num-samples 40
    --nrow 10
    --batch-size 40
    --sampler ddim
    --steps 25
    --cfg-scale 4
)

scripts/dev/bootstrap.sh
mkdir -p "$(dirname "$OUT")"
build/eoc sample --out "$OUT" "${DEMO_ARGS[@]}" "$@"
echo "demo: wrote $ROOT/$OUT"
