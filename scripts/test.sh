#!/usr/bin/env bash
# Builds stimloop and runs the whole test suite (unit, golden, CLI; GPU tests skip without a GPU).
# Golden tests read ${STIMLOOP_V4_DATA:-../shared/v4} and print a skip line when it is absent.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh "$@"
ctest --test-dir "${BUILD_DIR:-build}" --output-on-failure --parallel 2
