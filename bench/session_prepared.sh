#!/usr/bin/env bash
# Prepared-ahead blocks: what the trial time buys. A simulated rig runs the same session twice
# on one server (2 pool blocks, then SYNTHESIZE blocks of 8 with a deadline, each block's trials
# taking count x repeats x TRIAL_MS before the report): once with --no-prepare, once with the
# server preparing the next block while the trials run. Prints, per run, the synthesized stimuli's
# median steps, their true response over the best pool image, the NextBlock latencies and how
# often a refit restarted the prepared syntheses. Exits 2 if a prepared run's NextBlock p99 is
# above the deadline + 20 ms.
#   bench/session_prepared.sh [BLOCKS] [DEADLINE_MS] [TRIAL_MS] [MIN_COSINE]
# With the published data (STIMLOOP_V4_DATA or ../shared/v4) the base is the shared 50-filter
# model and the virtual neurons 8 of its own outputs (self-consistent); else the demo models.
set -euo pipefail
cd "$(dirname "$0")/.."
blocks=${1:-10}
deadline=${2:-250}
trial_ms=${3:-150}
min_agreement=${4:-0}
bin=build/bin
work=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT
source bench/session_bench_env.sh
start_session_server info
echo "trial $trial_ms ms, deadline $deadline ms"
for run in fresh prepared; do
  flags=()
  [ "$run" = fresh ] && flags=(--no-prepare)
  echo "== $run"
  "$bin/stimloop-rig-sim" --server "127.0.0.1:$port" --session "$run" --base-model "$base" \
    --pool bench "${neurons[@]}" "${sim_models[@]}" --gain "$gain" --blocks "$blocks" --count 8 \
    --repeats 2 --schedule pool,pool,synthesize --steps 1000 --deadline-ms "$deadline" \
    --trial-ms "$trial_ms" --prepared-min-agreement "$min_agreement" --seed 7 "${flags[@]}" \
    --summary-json "$work/$run.json"
done
python3 - "$work/fresh.json" "$work/prepared.json" "$deadline" <<'PY'
import json, statistics, sys
deadline = float(sys.argv[3])
ok = True
for path in sys.argv[1:3]:
    s = json.load(open(path))
    synth = [b for b in s["per_block"] if b["strategy"] == "synthesize"]
    steps = statistics.median(b["median_synthesis_steps"] for b in synth)
    ratio = statistics.median(b["median_synthesized_over_best_pool"] for b in synth)
    prepared = sum(b["prepared_stimuli"] for b in synth)
    restarted = sum(b["prepared_invalidated"] for b in s["per_block"])
    lat = s["next_block_latency"]["synthesize"]
    print(f"{s['session']:>9}: median steps {steps:.0f}, synthesized/best pool {ratio:.2f}, "
          f"prepared stimuli {prepared}/{8 * len(synth)}, restarted by refits {restarted}, "
          f"NextBlock p50 {lat['p50_ms']:.1f} ms p99 {lat['p99_ms']:.1f} ms")
    late = [f"block {b['block']} {b['next_block_ms']:.0f} ms (prepared {b['prepared_stimuli']}, "
            f"steps {b['median_synthesis_steps']})"
            for b in synth if b["next_block_ms"] > deadline + 20]
    if late:
        print("           late: " + "; ".join(late))
    if s["session"] == "prepared" and lat["p99_ms"] > deadline + 20:
        ok = False
print("PASS" if ok else "FAIL: prepared NextBlock p99 above the deadline + 20 ms")
sys.exit(0 if ok else 2)
PY
grep -c "event=prepared_invalidated" "$work/server.log" | sed 's/^/prepared_invalidated log lines: /'
