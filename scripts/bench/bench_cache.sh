#!/usr/bin/env bash
# Cache benchmark on the built-in Fashion-MNIST model: every schedule x corrector (none, taylor,
# EOC in each form), DDIM-20 and DDPM-50 at cfg 1.5, 64 images, priors from 48 samples of other
# seeds. Writes docs/benchmarks/cache_quality_fmnist.{json,md}. Extra flags go to bench_cache.py
# (e.g. --device cuda, --samplers ddim20, --repeats 5; a later --out/--markdown wins).
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-/usr/bin/python3}
[ -x build/eoc ] || scripts/dev/bootstrap.sh
exec "$PYTHON" scripts/bench/bench_cache.py --eoc build/eoc \
  --out docs/benchmarks/cache_quality_fmnist.json --markdown docs/benchmarks/cache_quality_fmnist.md "$@"
