#!/usr/bin/env bash
# Fuzzes the parsers of untrusted files (cache masks, EOC priors, --config files, .npy, --out-dir
# run records) with libFuzzer under ASan + UBSan: configures and builds build-fuzz/ with clang
# (-DEOC_FUZZ=ON, a build of its own), then runs each target for SECONDS (default 60) from its
# seed corpus tests/fuzz/corpus/<target>/. New interesting inputs stay in build-fuzz/corpus/.
# A crashing (or timing-out, or memory-exhausting) input is copied to
# tests/fuzz/regressions/<target>/, which tests/cpp/test_fuzz_regressions.cpp replays in every
# unit test run: keep it there after fixing the bug.
#
#   scripts/dev/fuzz.sh [SECONDS] [TARGET...]      e.g. scripts/dev/fuzz.sh 300 fuzz_prior
#
# Needs clang-14 and libclang-rt-14-dev (Debian 12). Environment: EOC_FUZZ_CXX (default
# clang++-14), EOC_FUZZ_BUILD (default build-fuzz), JOBS (build jobs, default nproc).
# Exits 1 when any target found something.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SECS="${1:-60}"
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(fuzz_mask fuzz_prior fuzz_config fuzz_npy fuzz_run_record)
CXX="${EOC_FUZZ_CXX:-clang++-14}"
BUILD="${EOC_FUZZ_BUILD:-$ROOT/build-fuzz}"

if ! command -v "$CXX" >/dev/null; then
  echo "fuzz.sh: $CXX not found (apt-get install -y clang-14 libclang-rt-14-dev)" >&2
  exit 2
fi
# -O1 -g keeps asserts and readable stacks; the build is separate from build/ (another compiler).
mkdir -p "$BUILD"
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_CXX_COMPILER="$CXX" -DCMAKE_BUILD_TYPE=Debug \
  -DCMAKE_CXX_FLAGS_DEBUG="-O1 -g" -DEOC_FUZZ=ON -DEOC_BUILD_TESTS=OFF >"$BUILD/configure.log" \
  || { cat "$BUILD/configure.log" >&2; exit 2; }
cmake --build "$BUILD" -j"${JOBS:-$(nproc)}" --target "${TARGETS[@]}"

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

found=()
for t in "${TARGETS[@]}"; do
  seeds="$ROOT/tests/fuzz/corpus/$t"
  work="$BUILD/corpus/$t"
  findings="$BUILD/findings/$t"
  rm -rf "$findings"
  mkdir -p "$work" "$findings"
  dict=()
  [ "$t" = fuzz_npy ] || dict=(-dict="$ROOT/tests/fuzz/json.dict")
  echo "== $t: ${SECS} s (seeds: tests/fuzz/corpus/$t)"
  start=$(date +%s)
  set +e
  # Fork mode goes on after a finding, so one run collects every distinct crashing input.
  (cd "$BUILD" && "$BUILD/tests/fuzz/$t" -max_total_time="$SECS" -fork=1 -ignore_crashes=1 \
     -ignore_timeouts=1 -ignore_ooms=1 -timeout=10 -rss_limit_mb=4096 -malloc_limit_mb=2048 \
     -artifact_prefix="$findings/" "${dict[@]}" "$work" "$seeds") >"$BUILD/$t.log" 2>&1
  rc=$?
  set -e
  grep -E "^#[0-9]+: cov:" "$BUILD/$t.log" | tail -1 || true
  echo "   exit $rc after $(( $(date +%s) - start )) s; log: $BUILD/$t.log"
  shopt -s nullglob
  artifacts=("$findings"/crash-* "$findings"/leak-* "$findings"/timeout-* "$findings"/oom-*)
  shopt -u nullglob
  if [ "$rc" -ne 0 ] || [ ${#artifacts[@]} -gt 0 ]; then
    mkdir -p "$ROOT/tests/fuzz/regressions/$t"
    for a in "${artifacts[@]}"; do cp "$a" "$ROOT/tests/fuzz/regressions/$t/"; done
    found+=("$t")
    echo "   FINDING: $t (inputs copied to tests/fuzz/regressions/$t/); each replayed:"
    for a in "${artifacts[@]}"; do
      echo "   - $(basename "$a"):"
      (cd "$BUILD" && timeout 60 "$BUILD/tests/fuzz/$t" "$a" 2>&1) | grep -E \
        "runtime error|ERROR: |SUMMARY|what\(\)|terminate called|in eoc::" | head -8 | sed 's/^/       /'
    done
  fi
done
if [ ${#found[@]} -gt 0 ]; then
  echo "fuzz.sh: findings in: ${found[*]}" >&2
  exit 1
fi
echo "fuzz.sh: no findings (${#TARGETS[@]} target(s), ${SECS} s each)"
