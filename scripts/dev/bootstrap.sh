#!/usr/bin/env bash
# Sets up a Debian 12 machine for eoc and builds it.
#
#   scripts/dev/bootstrap.sh [--no-build]
#
# 1. Installs the Debian packages below (skipped when all are already installed, so reruns
#    are fast). Non-interactive; uses sudo only when not root.
# 2. Configures and builds: cmake -S . -B build -DCMAKE_BUILD_TYPE=Release; cmake --build build.
# Works from any directory. Environment: EOC_BUILD_TYPE (default Release),
# EOC_CMAKE_ARGS (extra configure arguments, word-split).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

BUILD=1
for arg in "$@"; do
    case "$arg" in
        --no-build) BUILD=0 ;;
        -h|--help) sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "bootstrap.sh: error: unknown argument '$arg'" >&2; exit 2 ;;
    esac
done

PACKAGES=(
    build-essential cmake git unzip
    libtorch-dev libcli11-dev libspdlog-dev libfmt-dev nlohmann-json3-dev libstb-dev libzip-dev
    libgtest-dev libopenblas0-pthread
    python3 python3-torch python3-numpy python3-pytest python3-pil python3-matplotlib
)

missing=()
for pkg in "${PACKAGES[@]}"; do
    status="$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)"
    if [[ "$status" != "install ok installed" ]]; then
        missing+=("$pkg")
    fi
done

if ((${#missing[@]} > 0)); then
    echo "bootstrap.sh: installing ${missing[*]}" >&2
    SUDO=()
    if [[ "$(id -u)" -ne 0 ]]; then
        if ! command -v sudo >/dev/null 2>&1; then
            echo "bootstrap.sh: error: not root and sudo is unavailable; install as root: ${missing[*]}" >&2
            exit 1
        fi
        SUDO=(sudo)
    fi
    export DEBIAN_FRONTEND=noninteractive
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${PACKAGES[@]}"
else
    echo "bootstrap.sh: all ${#PACKAGES[@]} Debian packages already installed" >&2
fi

if ((BUILD)); then
    # shellcheck disable=SC2086
    cmake -S . -B build -DCMAKE_BUILD_TYPE="${EOC_BUILD_TYPE:-Release}" ${EOC_CMAKE_ARGS:-}
    cmake --build build -j"$(nproc)"
fi
