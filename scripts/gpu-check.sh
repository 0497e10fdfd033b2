#!/usr/bin/env bash
# One prepared check for a lent GPU machine (see scripts/gpu-bundle.sh): device facts, the GPU
# test suite (every op and every published model, CUDA vs CPU), compute-sanitizer memcheck and
# racecheck on the op tests, and the backend benchmark. Logs go to $OUT (default out/gpu-check).
# Designed to finish well inside 8 minutes (about 2.5 minutes on an H200). SKIP_BENCH=1 stops
# after the sanitizers.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/gpu-check}
mkdir -p "$OUT"
BUNDLE=.device-data
if [ ! -x "$BUNDLE/bin/stimloop_gpu_tests" ]; then
  echo "no bundle in $BUNDLE: run scripts/gpu-bundle.sh on the build machine and carry it" >&2
  exit 2
fi
export LD_LIBRARY_PATH="$PWD/$BUNDLE/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
if [ -f "$BUNDLE/v4.tar.xz" ]; then
  mkdir -p /tmp/stimloop-v4 && tar -C /tmp/stimloop-v4 -xJf "$BUNDLE/v4.tar.xz"
  export STIMLOOP_V4_DATA=/tmp/stimloop-v4
fi
status=0
step() {  # step NAME TIMEOUT CMD...: runs CMD, logs to $OUT/NAME.log, records failure
  local name=$1 limit=$2; shift 2
  echo "== $name"
  local t0=$SECONDS
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  tail -n 15 "$OUT/$name.log"
  echo "-- $name: exit $rc in $((SECONDS - t0)) s"
  [ $rc -eq 0 ] || status=1
}
step device 30 nvidia-smi
step gpu-tests 240 "$BUNDLE/bin/stimloop_gpu_tests" --durations yes
SAN=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null)
if [ -n "$SAN" ]; then
  step memcheck 120 "$SAN" --tool memcheck --error-exitcode 9 "$BUNDLE/bin/stimloop_gpu_tests" "[ops]"
  step racecheck 120 "$SAN" --tool racecheck --error-exitcode 9 "$BUNDLE/bin/stimloop_gpu_tests" "[ops]"
else
  echo "compute-sanitizer not found"; status=1
fi
if [ -n "${SKIP_BENCH:-}" ]; then exit $status; fi  # SKIP_BENCH=1: correctness checks only
step bench 120 "$BUNDLE/bin/stimloop-bench" --backend all --batch 1 --batch 64 --batch 256 --min-time 1
NATURAL_STD=()
[ -f "$BUNDLE/natural_std.json" ] && NATURAL_STD=(--natural-std "$BUNDLE/natural_std.json")
step synthesis-quality 300 "$BUNDLE/bin/stimloop-bench-synthesis" --backend cuda "${NATURAL_STD[@]}" ${SYNTHESIS_ARGS:-}
exit $status
