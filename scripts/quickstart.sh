#!/usr/bin/env bash
# The main job, from a fresh Debian 12 machine: install what is missing, build, then predict,
# take an input gradient on a generated test image, and synthesize a preferred stimulus. Uses the models in $1 or $STIMLOOP_MODELS
# when given, else the built-in demo model.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh >/dev/null
MODELS_DIR=${1:-${STIMLOOP_MODELS:-}}
export STIMLOOP_MODELS=$MODELS_DIR
OUT=${OUT_DIR:-out/quickstart}
mkdir -p "$OUT"
bin=build/bin/stimloop
model=demo
if [ -n "$MODELS_DIR" ]; then
  model=$($bin models --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["models"][0]["id"])')
fi
echo "== models"
$bin models
echo "== test images"
$bin test-image --out "$OUT/grating_vertical.png" --orientation 0
$bin test-image --out "$OUT/grating_horizontal.png" --orientation 90
echo "== predict ($model)"
$bin predict --model "$model" --json "$OUT/grating_vertical.png" "$OUT/grating_horizontal.png"
echo "== input gradient ($model)"
$bin gradient --model "$model" --image "$OUT/grating_vertical.png" --out "$OUT/gradient.npy"
echo "== preferred stimulus ($model)"
steps=300
[ "$model" = demo ] || steps=1000
$bin synthesize --model "$model" --objective max --steps "$steps" --out "$OUT/preferred.png"
$bin replay "$OUT/preferred.json"
echo "quickstart done: outputs in $OUT/"
