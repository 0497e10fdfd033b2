#!/usr/bin/env bash
# Configures and builds stimloop into ${BUILD_DIR:-build} (Release, Ninja, ccache).
# Extra arguments go to cmake, e.g. -DSTIMLOOP_CUDA=OFF.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
launcher=()
if command -v ccache >/dev/null; then
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
fi
cmake -S . -B "$BUILD_DIR" -G Ninja "${launcher[@]}" "$@"
cmake --build "$BUILD_DIR" --parallel "$(nproc)"
