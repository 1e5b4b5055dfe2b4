#!/usr/bin/env bash
# Sets up and builds eoc (scripts/dev/bootstrap.sh), then runs every test through CTest, in
# parallel (-j$(nproc)): the C++ unit tests and the pytest suite under tests/python, one CTest
# test per module (pytest.cli.test_cli_sampling, ...); then the sanitizer build
# (scripts/dev/test_sanitized.sh, its own build in build-asan/; EOC_SKIP_SANITIZED=1 skips it):
# the unit tests and a subset of the CLI tests (every command, cache and corrector, resume,
# shards, the NaN replay) against eoc built with AddressSanitizer + UndefinedBehaviorSanitizer.
# Exits non-zero on any failure, when CTest finds no test (--no-tests=error), and when a pytest
# test is skipped for a reason that is not an allowed, environment-dependent one
# (ALLOWED_SKIPS in tests/python/conftest.py). Prints the counts of each part at the end (for
# pytest, the sum over the modules' sessions). Extra arguments go to ctest after -j$(nproc)
# (e.g. -R l2c, -j1).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

scripts/dev/bootstrap.sh

# The counts: CTest's summary line, and the total of the pytest modules' own lines (each module
# is a pytest session that prints `eoc-pytest-counts: P passed, F failed, E errors, S skipped (N
# not allowed)`; they are in CTest's log, since --output-on-failure shows a passing test's output
# only there).
ctest_out="$(mktemp)"
trap 'rm -f "$ctest_out"' EXIT
ctest_log=build/Testing/Temporary/LastTest.log
pytest_total() {
  { grep -h '^eoc-pytest-counts:' "$ctest_log" 2>/dev/null || true; } | awk '
    { modules++
      for (i = 2; i < NF; i++) {
        word = $(i + 1); gsub(/[,()]/, "", word); n = $i; gsub(/[(]/, "", n)
        if (n ~ /^[0-9]+$/) sum[word] += n
      } }
    END {
      if (!modules) { print "pytest: (not run)"; exit }
      printf "pytest: %d passed, %d failed, %d errors, %d skipped (%d not allowed)",
             sum["passed"], sum["failed"], sum["errors"], sum["skipped"], sum["not"]
      if (sum["xfailed"] || sum["xpassed"])
        printf ", %d xfailed, %d xpassed", sum["xfailed"], sum["xpassed"]
      printf " in %d modules\n", modules
    }'
}
counts() {
  echo "== test counts (CTest in build/)"
  grep -E '^[0-9]+% tests passed|^No tests were found' "$ctest_out" || echo "(no CTest summary)"
  pytest_total
}

status=0
rm -f "$ctest_log"  # no counts from an earlier run
ctest --test-dir build --output-on-failure --no-tests=error -j"$(nproc)" "$@" 2>&1 \
  | tee "$ctest_out" || status=$?
counts
if [ "$status" != 0 ]; then
  echo "test.sh: CTest failed (exit $status)" >&2
  exit "$status"
fi
if [ "${EOC_SKIP_SANITIZED:-0}" != 1 ]; then
  scripts/dev/test_sanitized.sh
fi
