#!/usr/bin/env bash
# SIGTERM ends the server promptly and honestly: under a mixed load (long campaign and interactive
# syntheses, predicts with short deadlines, a simulated rig running synthesized session blocks,
# and raw TCP sockets that never speak HTTP/2) the process exits within LIMIT_S of the signal, in
# every one of TRIALS trials, and the calls it cut short got a message from the server
# ("shut down"), not a bare cancellation.
#   sigterm_test.sh BIN_DIR [TRIALS] [LIMIT_S]
set -euo pipefail
bin=$1
trials=${2:-10}
limit_s=${3:-3}
work=$(mktemp -d)
pids=()
server_pid=""
cleanup() {
  for p in "${pids[@]}" $server_pid; do kill -9 "$p" 2>/dev/null || true; done
  exec 3>&- 4>&- 5>&- 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
"$(dirname "$0")/../../scripts/make-demo-pool.sh" "$bin/stimloop" "$work/pool"

worst=0
failures=0
for trial in $(seq "$trials"); do
  rm -rf "$work/data" "$work"/*.log "$work"/*.out
  "$bin/stimloop-server" --listen 127.0.0.1:0 --data-dir "$work/data" --pool "demo=$work/pool" \
    --log-level info >"$work/server.out" 2>"$work/server.log" &
  server_pid=$!
  port=""
  for _ in $(seq 300); do
    port=$(sed -n 's/.*listening on port \([0-9]*\).*/\1/p' "$work/server.out")
    [ -n "$port" ] && break
    sleep 0.1
  done
  [ -n "$port" ] || { echo "FAIL: the server did not start"; cat "$work/server.log"; exit 1; }
  addr=127.0.0.1:$port
  pids=()
  for c in 1 2; do
    "$bin/stimloop" --server "$addr" --priority campaign synthesize --model demo --objective max \
      --steps 1000000 --count 2 --out "$work/campaign$c.png" >/dev/null 2>"$work/campaign$c.log" &
    pids+=($!)
  done
  "$bin/stimloop" --server "$addr" --priority interactive synthesize --model demo_population \
    --objective max --steps 1000000 --out "$work/interactive.png" >/dev/null \
    2>"$work/interactive.log" &
  pids+=($!)
  "$bin/stimloop-rig-sim" --server "$addr" --session "t$trial" --base-model demo_population \
    --pool demo --neuron demo_population:0 --neuron demo_population:1 --blocks 100 --count 4 \
    --schedule pool,synthesize --min-stimuli 4 --steps 100000 --deadline-ms 20000 \
    --retry-s 0 \
    >"$work/rig.log" 2>&1 &
  pids+=($!)
  (
    "$bin/stimloop" test-image --out "$work/g.png" >/dev/null
    while "$bin/stimloop" --server "$addr" predict --model demo "$work/g.png" >/dev/null 2>&1; do :; done
  ) &
  pids+=($!)
  # Sockets that never send the HTTP/2 preface.
  exec 3<>"/dev/tcp/127.0.0.1/$port" 4<>"/dev/tcp/127.0.0.1/$port" 5<>"/dev/tcp/127.0.0.1/$port"
  sleep 3
  t0=$(date +%s%N)
  kill -TERM "$server_pid"
  code=0
  wait "$server_pid" || code=$?
  t1=$(date +%s%N)
  server_pid=""
  exec 3>&- 4>&- 5>&-
  ms=$(((t1 - t0) / 1000000))
  [ "$ms" -gt "$worst" ] && worst=$ms
  # Clients still waiting end on their own once the server is gone; give them a moment.
  for p in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  pids=()
  cut=$(cat "$work"/campaign*.log "$work/interactive.log")
  echo "trial $trial: exit code $code after ${ms} ms; campaign/interactive clients said: $(echo "$cut" | tr '\n' ' ' | cut -c1-200)"
  if [ "$code" -ne 0 ] || [ "$ms" -gt $((limit_s * 1000)) ]; then
    failures=$((failures + 1))
    echo "FAIL: trial $trial took ${ms} ms (limit ${limit_s} s) or exited with $code"
    tail -15 "$work/server.log"
  fi
  if ! grep -q "shut down\|shutting down" "$work"/campaign*.log "$work/interactive.log"; then
    failures=$((failures + 1))
    echo "FAIL: trial $trial: the cut calls got no message from the server"
  fi
done
echo "trials=$trials failures=$failures worst_exit_ms=$worst limit_ms=$((limit_s * 1000))"
[ "$failures" -eq 0 ]
