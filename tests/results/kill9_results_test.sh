#!/usr/bin/env bash
# Nothing in --results-dir is ever torn: a remote client asks for batches of large stimuli while
# the server is killed with SIGKILL at random moments during its writes and restarted on the
# same results directory, 20 times. At the end every record names a PNG that is there, whole,
# with the SHA-256 the record gives; every PNG is a complete file; anything else is a temporary
# with an obvious temporary name.
#   kill9_results_test.sh BIN_DIR [CYCLES]
set -euo pipefail
bin=$1
cycles=${2:-20}
work=$(mktemp -d)
server_pid=""
client_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill -9 "$server_pid" 2>/dev/null || true
  [ -n "$client_pid" ] && kill -9 "$client_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$work/results" "$work/client"

start_server() {
  "$bin/stimloop-server" --listen "127.0.0.1:$port" --results-dir "$work/results" \
    --data-dir "$work/data" --threads 1 >>"$work/server.log" 2>&1 &
  server_pid=$!
}

# Large upscaled stimuli, few steps: the server spends most of its time writing results.
client_loop() {
  while true; do
    "$bin/stimloop" --server "127.0.0.1:$port" synthesize --model demo --objective max \
      --steps 1 --count 8 --display-size 512 --out "$work/client/x.png" --no-progress \
      >/dev/null 2>>"$work/client.log" || sleep 0.05
  done
}

start_server
client_loop &
client_pid=$!
kills=0
# Each kill lands a few milliseconds after the server started writing a batch (a new name in
# the results directory), so most kills interrupt writes.
wait_for_writes() {
  local before now waited=0
  before=$(ls -A "$work/results" | wc -l)
  while [ $waited -lt 3000 ]; do
    now=$(ls -A "$work/results" | wc -l)
    [ "$now" != "$before" ] && return 0
    sleep 0.01
    waited=$((waited + 1))
  done
}
for i in $(seq "$cycles"); do
  wait_for_writes
  sleep "0.0$((RANDOM % 10))"
  kill -9 "$server_pid"
  wait "$server_pid" 2>/dev/null || true
  kills=$((kills + 1))
  start_server
done
sleep 1
kill -9 "$client_pid" 2>/dev/null || true
wait "$client_pid" 2>/dev/null || true
client_pid=""
kill -9 "$server_pid"
wait "$server_pid" 2>/dev/null || true
server_pid=""

if [ -z "$(ls -A "$work/results")" ]; then
  echo "FAIL: no results were written"; tail -n 5 "$work/server.log" "$work/client.log"; exit 1
fi
python3 - "$work/results" "$kills" <<'PY'
import hashlib, json, os, re, sys
results, kills = sys.argv[1], int(sys.argv[2])
temporary = re.compile(r"^\..+\.tmp-\d+-\d+$")
final = re.compile(r"^[A-Za-z0-9_-]+_\d+(\.\d+)?\.(png|json)$")
names = os.listdir(results)
problems, pairs, lone_png, temps = [], 0, 0, 0
def png_complete(data):
    return data.startswith(b"\x89PNG\r\n\x1a\n") and data.endswith(b"IEND\xaeB`\x82")
for name in sorted(names):
    path = os.path.join(results, name)
    if temporary.match(name):
        temps += 1
        continue
    if not final.match(name):
        problems.append(f"{name}: neither a result nor an obvious temporary")
        continue
    if name.endswith(".json"):
        try:
            record = json.load(open(path))
        except Exception as e:
            problems.append(f"{name}: not a whole JSON record ({os.path.getsize(path)} bytes): {e}")
            continue
        png = record.get("png", "")
        if not os.path.isfile(png):
            problems.append(f"{name}: its PNG {png} is missing")
            continue
        data = open(png, "rb").read()
        if hashlib.sha256(data).hexdigest() != record["png_sha256"]:
            problems.append(f"{name}: {png} ({len(data)} bytes) does not match the record")
            continue
        pairs += 1
    else:
        data = open(path, "rb").read()
        if not png_complete(data):
            problems.append(f"{name}: a torn PNG ({len(data)} bytes)")
        elif not os.path.exists(path[:-4] + ".json"):
            lone_png += 1
print(f"kills={kills} pairs={pairs} png_without_record={lone_png} temporaries={temps}")
for p in problems:
    print("FAIL:", p)
assert pairs > 0, "no results were written"
assert not problems
print("PASS")
PY
