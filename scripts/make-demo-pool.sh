#!/usr/bin/env bash
# Writes a small image pool of gratings (8 orientations x 4 periods) and noise into DIR, with the
# stimloop CLI: enough for a demo or test session on the demo models.
#   scripts/make-demo-pool.sh STIMLOOP_BINARY DIR
set -euo pipefail
stimloop=$1
dir=$2
mkdir -p "$dir"
for o in 0 22 45 67 90 112 135 157; do
  for p in 6 10 16 24; do
    "$stimloop" test-image --out "$dir/grating_o${o}_p${p}.png" --orientation "$o" --period "$p" >/dev/null
  done
done
for s in 1 2 3 4 5 6 7 8; do
  "$stimloop" test-image --out "$dir/noise${s}.png" --kind noise --seed "$s" >/dev/null
done
