#!/usr/bin/env bash
# Nothing acknowledged is lost: a simulated rig runs a 20-block session (pool, then synthesized
# blocks on the calibrated channels) while the server is killed with SIGKILL at random moments
# and restarted on the same port and data directory. The rig retries like a real one. At the end
# the server must hold exactly the trials the rig had acknowledged (none lost, none twice), and
# the session must have finished.
#   kill9_session_test.sh BIN_DIR
set -euo pipefail
bin=$1
work=$(mktemp -d)
server_pid=""
rig_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill -9 "$server_pid" 2>/dev/null || true
  [ -n "$rig_pid" ] && kill -9 "$rig_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
"$(dirname "$0")/../../scripts/make-demo-pool.sh" "$bin/stimloop" "$work/pool"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

start_server() {
  "$bin/stimloop-server" --listen "127.0.0.1:$port" --data-dir "$work/data" \
    --pool "demo=$work/pool" --threads 1 >>"$work/server.log" 2>&1 &
  server_pid=$!
}

start_server
blocks=20 count=4 repeats=5
"$bin/stimloop-rig-sim" --server "127.0.0.1:$port" --session kill9 --blocks $blocks \
  --count $count --repeats $repeats --schedule pool,pool,pool,synthesize --steps 20 \
  --min-stimuli 8 --retry-s 60 --summary-json "$work/summary.json" >"$work/rig.log" 2>&1 &
rig_pid=$!

kills=0
for delay in 0.7 1.3 0.4 1.9 0.9 1.1 0.6 1.5; do
  sleep "$delay"
  kill -0 "$rig_pid" 2>/dev/null || break
  kill -9 "$server_pid"
  wait "$server_pid" 2>/dev/null || true
  kills=$((kills + 1))
  start_server
done
status=0
wait "$rig_pid" || status=$?
rig_pid=""
cat "$work/rig.log"
if [ $status -ne 0 ]; then
  echo "FAIL: the simulated rig exited with $status"
  tail -20 "$work/server.log"
  exit 1
fi
python3 - "$work/summary.json" $((blocks * count * repeats)) $kills <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
expected, kills = int(sys.argv[2]), int(sys.argv[3])
print(f"kills={kills} acknowledged={s['acknowledged_trials']} stored={s['stored']} "
      f"duplicates={s['duplicates']} server={s['server_trials']} retries={s['retries']}")
assert s["blocks"] == 20, s
assert s["acknowledged_trials"] == expected, "the session did not finish"
assert s["server_trials"] == expected, "the server lost or doubled acknowledged trials"
assert kills >= 2, "the server was not killed during the session"
print("PASS")
PY
