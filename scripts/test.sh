#!/usr/bin/env bash
# Sets up and builds eoc (scripts/dev/bootstrap.sh), then runs every test through CTest:
# the C++ unit tests and the pytest suite under tests/python; then the sanitizer build
# (scripts/dev/test_sanitized.sh, its own build in build-asan/; EOC_SKIP_SANITIZED=1 skips it):
# the unit tests and a subset of the CLI tests (every command, cache and corrector, resume,
# shards, the NaN replay) against eoc built with AddressSanitizer + UndefinedBehaviorSanitizer.
# Exits non-zero on any failure, when CTest finds no test (--no-tests=error), and when a pytest
# test is skipped for a reason that is not an allowed, environment-dependent one
# (ALLOWED_SKIPS in tests/python/conftest.py). Prints the counts of each part at the end.
# Extra arguments go to ctest (e.g. -R l2c, -j2).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

scripts/dev/bootstrap.sh

# The counts: CTest's summary line, and the pytest suite's own line (from CTest's log, since
# --output-on-failure shows a passing test's output only in that log).
ctest_out="$(mktemp)"
trap 'rm -f "$ctest_out"' EXIT
counts() {
  echo "== test counts (CTest in build/)"
  grep -E '^[0-9]+% tests passed|^No tests were found' "$ctest_out" || echo "(no CTest summary)"
  grep -h '^eoc-pytest-counts:' build/Testing/Temporary/LastTest*.log 2>/dev/null \
    | sed 's/^/pytest: /' || echo "pytest: (not run)"
}

status=0
ctest --test-dir build --output-on-failure --no-tests=error "$@" 2>&1 | tee "$ctest_out" \
  || status=$?
counts
if [ "$status" != 0 ]; then
  echo "test.sh: CTest failed (exit $status)" >&2
  exit "$status"
fi
if [ "${EOC_SKIP_SANITIZED:-0}" != 1 ]; then
  scripts/dev/test_sanitized.sh
fi
