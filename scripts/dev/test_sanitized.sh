#!/usr/bin/env bash
# Builds the unit tests with AddressSanitizer + UndefinedBehaviorSanitizer (gcc, Debug,
# -DEOC_SANITIZE=address,undefined) in build-asan/ and runs them. Any ASan report (including
# LeakSanitizer at exit) or UBSan report fails the run. Extra arguments go to eoc_unit_tests
# (e.g. --gtest_filter=Prior.*). Environment: EOC_ASAN_BUILD (default build-asan), JOBS.
#
# No suppression file is needed: LibTorch (not instrumented) trips neither sanitizer in these
# tests, and LeakSanitizer stays on. allocator_may_return_null=1 makes an absurd allocation (a
# corrupt header asking for terabytes) fail the way it does in a normal build, as a C++
# exception the test sees, instead of an ASan abort.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD="${EOC_ASAN_BUILD:-$ROOT/build-asan}"

mkdir -p "$BUILD"
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Debug -DEOC_SANITIZE=address,undefined \
  >"$BUILD/configure.log" || { cat "$BUILD/configure.log" >&2; exit 2; }
cmake --build "$BUILD" -j"${JOBS:-$(nproc)}" --target eoc_unit_tests

ASAN_DEFAULTS="detect_leaks=1:allocator_may_return_null=1:strict_string_checks=1"
export ASAN_OPTIONS="${ASAN_OPTIONS:-$ASAN_DEFAULTS}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
cd "$ROOT"
"$BUILD/tests/eoc_unit_tests" "$@"
