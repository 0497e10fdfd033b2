#!/usr/bin/env bash
# NextBlock under a deadline while campaign work saturates the engine: a simulated rig runs a
# session (2 pool blocks, then SYNTHESIZE blocks of 8 stimuli, one per channel, 1000 steps asked,
# --deadline-ms) while two campaign clients keep the engine busy with long syntheses. Prints the
# NextBlock latencies and exits 2 when the SYNTHESIZE p99 exceeds the deadline + 20 ms.
#   bench/session_deadline.sh [BLOCKS] [DEADLINE_MS]
# With the published data (STIMLOOP_V4_DATA or ../shared/v4) the base is the shared 50-filter
# model, the channels 8 of its outputs and the pool images_190923.zip; otherwise the demo models
# and a generated pool.
set -euo pipefail
cd "$(dirname "$0")/.."
blocks=${1:-22}
deadline=${2:-250}
bin=build/bin
work=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT
source bench/session_bench_env.sh
start_session_server warn --with-demo
for c in 1 2; do
  "$bin/stimloop" --server "127.0.0.1:$port" --priority campaign synthesize --model demo \
    --objective max --steps 1000000 --count 2 --out "$work/campaign$c.png" >/dev/null 2>&1 &
  pids+=($!)
done
sleep 1
"$bin/stimloop-rig-sim" --server "127.0.0.1:$port" --session deadline --base-model "$base" \
  --pool bench "${neurons[@]}" "${sim_models[@]}" --gain "$gain" --blocks "$blocks" --count 8 \
  --schedule pool,pool,synthesize --steps 1000 --deadline-ms "$deadline" \
  --summary-json "$work/summary.json"
python3 - "$work/summary.json" "$deadline" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
deadline = float(sys.argv[2])
lat = s["next_block_latency"]["synthesize"]
stops = [b["stop_reason"] for b in s["per_block"] if b["strategy"] == "synthesize"]
print(f"SYNTHESIZE blocks: n={lat['n']} p50={lat['p50_ms']:.1f} ms p99={lat['p99_ms']:.1f} ms "
      f"max={lat['max_ms']:.1f} ms (deadline {deadline:.0f} ms; stop reasons {sorted(set(stops))})")
ok = lat["p99_ms"] <= deadline + 20
print("PASS" if ok else "FAIL: p99 above the deadline + 20 ms")
sys.exit(0 if ok else 2)
PY
