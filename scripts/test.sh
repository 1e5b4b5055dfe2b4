#!/usr/bin/env bash
# Sets up and builds eoc (scripts/bootstrap.sh), then runs every test through CTest:
# the C++ unit tests and the pytest suite under tests/python.
# Exits non-zero on any failure. Extra arguments go to ctest (e.g. -R l2c, -j2).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

scripts/bootstrap.sh
ctest --test-dir build --output-on-failure "$@"
