#!/usr/bin/env bash
# The main job, from a fresh Debian 12 machine: install what is missing, build, start
# stimloop-server on loopback, and through it list the models, predict, and synthesize a preferred
# stimulus (then replay it locally); a rig client asks for a few stimuli under a 250 ms deadline.
# Locally it also takes an input gradient. It ends with a closed-loop session: a simulated rig
# whose virtual neurons are the demo_population model's outputs shows pool images, reports
# Poisson spike counts, and gets stimuli synthesized on the channels the server calibrated.
# Uses the models in $1 or $STIMLOOP_MODELS when given, else the built-in demo model.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
mkdir -p "${OUT_DIR:-out/quickstart}"
build_log="${OUT_DIR:-out/quickstart}/build.log"
echo "== building (log: $build_log)"
# One progress line from ninja's [done/total] counter instead of the whole compiler output.
if ! scripts/build.sh 2>&1 | tee "$build_log" |
  awk '/^\[[0-9]+\/[0-9]+\]/ { printf "\r   %s", $1; fflush() } END { print "" }'; then
  tail -40 "$build_log"
  exit 1
fi
MODELS_DIR=${1:-${STIMLOOP_MODELS:-}}
export STIMLOOP_MODELS=$MODELS_DIR
OUT=${OUT_DIR:-out/quickstart}
mkdir -p "$OUT"
bin=build/bin/stimloop
model=demo
if [ -n "$MODELS_DIR" ]; then
  model=$($bin models --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["models"][0]["id"])')
fi

echo "== starting stimloop-server on 127.0.0.1 (models: ${MODELS_DIR:-built-in demo})"
rm -rf "$OUT/pool" "$OUT/sessions"
scripts/make-demo-pool.sh "$bin" "$OUT/pool"
server_args=(--listen 127.0.0.1:0 --backend auto --log-level warn --data-dir "$OUT/sessions"
  --pool "demo=$OUT/pool")
[ -n "$MODELS_DIR" ] && server_args+=(--models "$MODELS_DIR" --with-demo)
build/bin/stimloop-server "${server_args[@]}" >"$OUT/server.out" 2>"$OUT/server.log" &
server_pid=$!
trap 'kill $server_pid 2>/dev/null || true' EXIT
port=""
for _ in $(seq 600); do  # the line appears once every model is loaded and warmed up
  port=$(sed -n 's/.*listening on port \([0-9]*\).*/\1/p' "$OUT/server.out")
  [ -n "$port" ] && break
  kill -0 $server_pid 2>/dev/null || { cat "$OUT/server.log"; exit 1; }
  sleep 0.2
done
[ -n "$port" ] || { echo "server did not start"; cat "$OUT/server.log"; exit 1; }
remote=(--server "127.0.0.1:$port")
echo "   $(cat "$OUT/server.out")"

echo "== models (via the server)"
$bin "${remote[@]}" models
echo "== test images"
$bin test-image --out "$OUT/grating_vertical.png" --orientation 0
$bin test-image --out "$OUT/grating_horizontal.png" --orientation 90
echo "== predict ($model, via the server)"
$bin "${remote[@]}" predict --model "$model" --json "$OUT/grating_vertical.png" "$OUT/grating_horizontal.png"
echo "== input gradient ($model, local)"
$bin gradient --model "$model" --image "$OUT/grating_vertical.png" --out "$OUT/gradient.npy"
echo "== preferred stimulus ($model, synthesized by the server)"
steps=300
[ "$model" = demo ] || steps=1000
$bin "${remote[@]}" synthesize --model "$model" --objective max --steps "$steps" --out "$OUT/preferred.png"
$bin replay "$OUT/preferred.json"
echo "== a rig: one stimulus per trial, 1000 steps asked, 250 ms deadline"
build/bin/stimloop-rig-example --server "127.0.0.1:$port" --model "$model" --trials 5 --deadline-ms 250
echo "== a closed-loop session: a simulated rig, 4 virtual neurons (demo_population's outputs)"
echo "   blocks 0-1 from the pool, then stimuli synthesized on each calibrated channel;"
echo "   synth/pool = a synthesized stimulus's true response over its channel's best pool image"
build/bin/stimloop-rig-sim --server "127.0.0.1:$port" --session quickstart --blocks 5 --count 8 \
  --schedule pool,pool,synthesize --steps 200
echo "quickstart done: outputs in $OUT/"
