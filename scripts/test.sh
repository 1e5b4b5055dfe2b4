#!/usr/bin/env bash
# Sets up and builds eoc (scripts/dev/bootstrap.sh), then runs every test through CTest:
# the C++ unit tests and the pytest suite under tests/python; then the unit tests again under
# AddressSanitizer + UndefinedBehaviorSanitizer (scripts/dev/test_sanitized.sh, its own build in
# build-asan/; EOC_SKIP_SANITIZED=1 skips it).
# Exits non-zero on any failure. Extra arguments go to ctest (e.g. -R l2c, -j2).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

scripts/dev/bootstrap.sh
ctest --test-dir build --output-on-failure "$@"
if [ "${EOC_SKIP_SANITIZED:-0}" != 1 ]; then
  scripts/dev/test_sanitized.sh
fi
