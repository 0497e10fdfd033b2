# Sourced by the session benchmarks: picks the base model, virtual neurons and pool, and starts a
# server on a free port. Expects $bin and $work; sets base, neurons, sim_models, gain, port and
# appends the server's pid to pids. With the published data (STIMLOOP_V4_DATA or ../shared/v4)
# the base is the shared 50-filter model, the neurons 8 of its outputs and the pool
# images_190923.zip; else the demo models and a generated pool.
# Usage: start_session_server LOG_LEVEL [extra server flags...]
start_session_server() {
  local log_level=$1
  shift
  local v4=${STIMLOOP_V4_DATA:-../shared/v4} models pool
  if [ -f "$v4/shared_compact_models/shared_compact_model_50filters.keras" ]; then
    models=(--models "$v4/shared_compact_models")
    pool="$v4/images/images_190923.zip"
    base=shared_compact_model_50filters
    neurons=()
    for k in 0 1 2 3 4 5 6 7; do neurons+=(--neuron "$base:$k"); done
    sim_models=(--models "$v4/shared_compact_models")
    gain=5
  else
    scripts/make-demo-pool.sh "$bin/stimloop" "$work/pool"
    models=()
    pool="$work/pool"
    base=demo_population
    neurons=()
    for k in 0 1 2 3 0 1 2 3; do neurons+=(--neuron "demo_population:$k"); done
    sim_models=()
    gain=1
  fi
  "$bin/stimloop-server" --listen 127.0.0.1:0 "${models[@]}" "$@" --data-dir "$work/data" \
    --pool "bench=$pool" --log-level "$log_level" >"$work/server.out" 2>"$work/server.log" &
  pids+=($!)
  port=""
  for _ in $(seq 600); do
    port=$(sed -n 's/.*listening on port \([0-9]*\).*/\1/p' "$work/server.out")
    [ -n "$port" ] && break
    sleep 0.2
  done
  [ -n "$port" ] || { cat "$work/server.log"; return 1; }
  echo "server on port $port, base $base, pool $pool"
}
