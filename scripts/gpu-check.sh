#!/usr/bin/env bash
# One prepared check for a lent GPU machine (see scripts/gpu-bundle.sh, which builds here and
# packs .device-data/): device facts, the GPU test suite (every op, grouped launches, every
# published model on stimloop's kernels and on cuDNN, device synthesis against the host loop),
# the benchmark against PyTorch on the same card (bench/compare_pytorch_gpu.py: forward
# throughput, one 1000-step stimulus, all 219 models), then compute-sanitizer memcheck and
# racecheck on the op tests. Logs go to $OUT (default out/gpu-check), at most 8 files.
# The persistent step (STIMLOOP_CUDA_STEP=persistent, one cooperative kernel per run) is tested
# on its own after the rest, under compute-sanitizer memcheck and synccheck too; when its tests
# fail (or hang: a grid barrier that never opens), the benchmark leaves it out.
# Worst case 8 minutes (every step at its limit); SKIP_BENCH=1 skips the benchmark,
# SKIP_SANITIZERS=1 compute-sanitizer,
# QUALITY=1 adds the synthesis quality bars (issue 3, up to 5 more minutes), NCU=1 an Nsight
# Compute pass over one step of (b) and of (c) (throughput and occupancy per kernel, 2 minutes).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/gpu-check}
mkdir -p "$OUT"
rm -f "$OUT"/*.log  # steps append to their logs
BUNDLE=.device-data
# gpu-bundle.sh packs the binaries and libraries (the carry limit).
if [ -f "$BUNDLE/bin-lib.tar.xz" ] && [ ! -x "$BUNDLE/bin/stimloop_gpu_tests" ]; then
  tar -C "$BUNDLE" -xJf "$BUNDLE/bin-lib.tar.xz"
fi
if [ ! -x "$BUNDLE/bin/stimloop_gpu_tests" ]; then
  echo "no bundle in $BUNDLE: run scripts/gpu-bundle.sh on the build machine and carry it" >&2
  exit 2
fi
# cuDNN is not carried (too large): the device's PyTorch ships cuDNN 9.
CUDNN_LIB=$(find / -xdev -name 'libcudnn.so.9*' \( -type f -o -type l \) -not -path '/proc/*' -not -path '*/.debug/*' 2>/dev/null | head -n 1)
CUDNN_DIR=${CUDNN_LIB:+$(dirname "$CUDNN_LIB")}
echo "cuDNN: ${CUDNN_LIB:-not found}"
export LD_LIBRARY_PATH="$PWD/$BUNDLE/lib${CUDNN_DIR:+:$CUDNN_DIR}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
if [ -f "$BUNDLE/v4.tar.xz" ]; then
  mkdir -p /tmp/stimloop-v4 && tar -C /tmp/stimloop-v4 -xJf "$BUNDLE/v4.tar.xz"
  export STIMLOOP_V4_DATA=/tmp/stimloop-v4
fi
status=0
# step NAME TIMEOUT CMD...: runs CMD, appends its output to $OUT/${LOG:-NAME}.log, records
# failure. Related steps share a log (LOG=...): the device tool returns at most 8 files.
step() {
  local name=$1 limit=$2; shift 2
  local log="$OUT/${LOG:-$name}.log"
  echo "== $name"
  echo "== $name" >>"$log"
  local t0=$SECONDS
  timeout "$limit" "$@" >>"$log" 2>&1
  local rc=$?
  tail -n 25 "$log"
  echo "-- $name: exit $rc in $((SECONDS - t0)) s"
  [ $rc -eq 0 ] || status=1
}
LOG=gpu-tests step device 20 nvidia-smi
step gpu-tests 110 "$BUNDLE/bin/stimloop_gpu_tests" --durations yes "~[persistent]"
before=$status
LOG=gpu-tests step persistent-tests 60 "$BUNDLE/bin/stimloop_gpu_tests" --durations yes "[persistent]"
BENCH_STEP=both
if [ $status -ne $before ]; then
  BENCH_STEP=graph
  echo "persistent step failed its tests: the benchmark runs the graph step only"
fi
if [ -z "${SKIP_BENCH:-}" ]; then
  step bench 170 python3 bench/compare_pytorch_gpu.py --bin "$BUNDLE/bin" --step "$BENCH_STEP" \
    --json "$OUT/compare.json"
fi
SAN=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null)
if [ -n "${SKIP_SANITIZERS:-}" ]; then
  echo "compute-sanitizer skipped (SKIP_SANITIZERS)"
elif [ -n "$SAN" ]; then
  LOG=sanitizers step memcheck 40 "$SAN" --tool memcheck --error-exitcode 9 "$BUNDLE/bin/stimloop_gpu_tests" "[ops]"
  LOG=sanitizers step racecheck 40 "$SAN" --tool racecheck --error-exitcode 9 "$BUNDLE/bin/stimloop_gpu_tests" "[ops]"
  # The persistent kernel: out-of-bounds accesses, and barriers or warp shuffles some threads miss.
  SLICES="Persistent device step: one long run equals the same steps in slices"
  LOG=sanitizers step memcheck-persistent 15 "$SAN" --tool memcheck --error-exitcode 9 "$BUNDLE/bin/stimloop_gpu_tests" "$SLICES"
  LOG=sanitizers step synccheck-persistent 15 "$SAN" --tool synccheck --error-exitcode 9 "$BUNDLE/bin/stimloop_gpu_tests" "$SLICES"
else
  echo "compute-sanitizer not found"; status=1
fi
NCU_BIN=$(command -v ncu || ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -n 1)
if [ -n "${NCU:-}" ] && [ -n "$NCU_BIN" ]; then
  for case in b c; do  # the first step's launches of stimloop's own kernels
    LOG=ncu step "ncu-$case" 60 "$NCU_BIN" --section SpeedOfLight --section Occupancy --section LaunchStats \
      -k 'regex:conv2d|depthwise|pointwise|update_kernel|gradient_sumsq' --launch-count 30 \
      "$BUNDLE/bin/stimloop-bench-gpu" --only "$case" --steps 2
  done
elif [ -n "${NCU:-}" ]; then
  echo "ncu not found"
fi
if [ -n "${QUALITY:-}" ]; then
  NATURAL_STD=()
  [ -f "$BUNDLE/natural_std.json" ] && NATURAL_STD=(--natural-std "$BUNDLE/natural_std.json")
  step synthesis-quality 300 "$BUNDLE/bin/stimloop-bench-synthesis" --backend cuda "${NATURAL_STD[@]}"
fi
exit $status
