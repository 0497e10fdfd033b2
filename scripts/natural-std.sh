#!/usr/bin/env bash
# Standard deviation of compact models' responses over their session's 1200 natural images
# (the JPEGs in ${STIMLOOP_V4_DATA:-../shared/v4}/images), for the adversarial bar of
# stimloop-bench-synthesis (--natural-std). Needs the stimloop CLI (JPEG decoding), so it runs on
# the build machine; the output is derived from the published data and stays out of git.
#   scripts/natural-std.sh [OUT.json] [MODEL_ID ...]
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${STIMLOOP_V4_DATA:-../shared/v4}
OUT=${1:-out/natural_std.json}
shift || true
MODELS=("$@")
if [ ${#MODELS[@]} -eq 0 ]; then  # the models of stimloop-bench-synthesis's adversarial section
  MODELS=(compact_model_190923_neuron0 compact_model_210225_neuron7 compact_model_190923_neuron16
          compact_model_210225_neuron27 compact_model_190923_neuron1 compact_model_210225_neuron0)
fi
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$(dirname "$OUT")"
echo "{" >"$TMP/out.json"
first=1
for model in "${MODELS[@]}"; do
  session=$(echo "$model" | sed -E 's/.*_([0-9]{6})_neuron.*/\1/')
  if [ ! -d "$TMP/$session" ]; then
    mkdir -p "$TMP/$session"
    unzip -q -o -j "$DATA/images/images_$session.zip" -d "$TMP/$session"
  fi
  std=$(build/bin/stimloop predict --models "$DATA/compact_models" --model "$model" --json \
          $(ls "$TMP/$session"/*.jpg | sort) |
        python3 -c 'import json,sys,statistics; r=[x[0] for x in json.load(sys.stdin)["responses"]]; assert len(r)==1200, len(r); print(statistics.stdev(r))')
  [ $first -eq 1 ] || echo "," >>"$TMP/out.json"
  first=0
  printf '  "%s": %s' "$model" "$std" >>"$TMP/out.json"
  echo "$model: std $std over 1200 images of session $session"
done
printf '\n}\n' >>"$TMP/out.json"
mv "$TMP/out.json" "$OUT"
echo "wrote $OUT"
