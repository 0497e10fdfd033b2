#!/usr/bin/env bash
# Command-line contract tests: the spellings and output formats other scripts rely on.
# Usage: cli_test.sh PATH/TO/stimloop
set -u
STIMLOOP=${1:?usage: cli_test.sh PATH/TO/stimloop}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
unset STIMLOOP_MODELS
source "$(dirname "$0")/cli_lib.sh"

# json_check NAME PYTHON_EXPR : evaluates EXPR with j = the JSON on stdout of the last command
json_check() {
  if python3 -c "import json,sys; j=json.load(open('$WORK/out')); sys.exit(0 if ($2) else 1)"; then
    pass "$1"; else fail "$1: $(head -c 400 "$WORK/out")"; fi
}

expect_ok "test-image grating" "$STIMLOOP" test-image --out "$WORK/vertical.png"
expect_ok "test-image rotated" "$STIMLOOP" test-image --out "$WORK/horizontal.png" --orientation 90
expect_ok "test-image noise" "$STIMLOOP" test-image --out "$WORK/noise.png" --kind noise --seed 3
expect_ok "test-image small" "$STIMLOOP" test-image --out "$WORK/small.png" --size 64

expect_ok "models --json" "$STIMLOOP" models --json
json_check "models lists only the labelled demos without a directory" \
  "[m['id'] for m in j['models']] == ['demo', 'demo_population'] and \
   all(m['demo'] is True for m in j['models']) and j['models'][1]['outputs'] == 4 and \
   j['models'][0]['input_shape'] == [112, 112, 3] and len(j['models'][0]['sha256']) == 64"
expect_ok "models (text)" "$STIMLOOP" models
grep -q "DEMO" "$WORK/out" && pass "text listing labels the demo" || fail "text listing lacks DEMO label"

expect_ok "predict --json" "$STIMLOOP" predict --model demo --json "$WORK/vertical.png" "$WORK/horizontal.png"
json_check "predict JSON has the contract's keys and one row per image" \
  "j['model'] == 'demo' and j['outputs'] == 1 and len(j['sha256']) == 64 and \
   j['images'] == ['$WORK/vertical.png', '$WORK/horizontal.png'] and \
   [len(r) for r in j['responses']] == [1, 1] and j['demo'] is True"
json_check "demo prefers vertical over horizontal gratings" \
  "j['responses'][0][0] > j['responses'][1][0] + 1.0"

expect_ok "predict text" "$STIMLOOP" predict --model demo "$WORK/noise.png"
grep -q "noise.png" "$WORK/out" && pass "text predict names the image" || fail "text predict output"

expect_ok "gradient" "$STIMLOOP" gradient --model demo --image "$WORK/vertical.png" --out "$WORK/g.npy"
python3 - "$WORK/g.npy" <<'PY' && pass "gradient .npy is float32 (112, 112, 3), finite, non-zero" || fail "gradient .npy format"
import ast, struct, sys, math
data = open(sys.argv[1], 'rb').read()
assert data[:6] == b'\x93NUMPY'
hlen = struct.unpack('<H', data[8:10])[0]
header = ast.literal_eval(data[10:10 + hlen].decode())
assert header['descr'] == '<f4' and header['shape'] == (112, 112, 3) and not header['fortran_order']
values = struct.unpack('<%df' % (112 * 112 * 3), data[10 + hlen:])
assert all(math.isfinite(v) for v in values) and any(v != 0 for v in values)
PY

expect_ok "gradient --json" "$STIMLOOP" gradient --model demo --image "$WORK/vertical.png" --out "$WORK/g2.npy" --json --output-index 0
json_check "gradient JSON reports response and shape" "j['shape'] == [112, 112, 3] and j['output_index'] == 0"

# Bad input: a clear message and a non-zero exit, never a crash.
expect_error "wrong image size is rejected" "64x64.*--resize" "$STIMLOOP" predict --model demo "$WORK/small.png"
expect_ok "--resize accepts other sizes" "$STIMLOOP" predict --model demo --resize "$WORK/small.png"
expect_error "unknown model id" "unknown model id 'nosuch'" "$STIMLOOP" predict --model nosuch "$WORK/vertical.png"
expect_error "missing model file" "does not exist" "$STIMLOOP" predict --model /nonexistent/m.keras "$WORK/vertical.png"
expect_error "missing image" "does not exist.*NOT_FOUND" "$STIMLOOP" predict --model demo "$WORK/none.png"
echo "not an image" > "$WORK/fake.png"
expect_error "undecodable image" "cannot decode" "$STIMLOOP" predict --model demo "$WORK/fake.png"
expect_error "output index out of range" "OUT_OF_RANGE" "$STIMLOOP" gradient --model demo --image "$WORK/vertical.png" --out "$WORK/x.npy" --output-index 5
expect_error "missing model directory" "does not exist" "$STIMLOOP" models --models "$WORK/nowhere"
printf 'PK\003\004garbage' > "$WORK/broken.keras"
expect_error "corrupt model file names the file" "broken.keras" "$STIMLOOP" predict --model "$WORK/broken.keras" "$WORK/vertical.png"
expect_error "unknown backend" "unknown backend" "$STIMLOOP" predict --backend tpu --model demo "$WORK/vertical.png"

expect_ok "--backend auto always works" "$STIMLOOP" predict --backend auto --model demo "$WORK/vertical.png"
if "$STIMLOOP" info | grep -q '"gpu": null'; then
  expect_error "--backend cuda without a GPU says why" "CUDA backend unavailable" \
    "$STIMLOOP" predict --backend cuda --model demo "$WORK/vertical.png"
else
  expect_ok "--backend cuda on a GPU" "$STIMLOOP" predict --backend cuda --model demo "$WORK/vertical.png"
fi

# ---- synthesize and replay (demo models; few steps) --------------------------------------------
SYN=("$STIMLOOP" synthesize --no-progress)
expect_ok "predict the noise image (adversarial baseline)" "$STIMLOOP" predict --model demo --json "$WORK/noise.png"
NOISE_RESPONSE=$(python3 -c "import json; print(json.load(open('$WORK/out'))['responses'][0][0])")

expect_ok "synthesize max --json" "${SYN[@]}" --model demo --objective max --steps 5 --out "$WORK/s_max.png" --json
json_check "max: one record, cowley2026 by default, 5 steps, COMPLETED" \
  "len(j) == 1 and j[0]['request']['objective'] == 'max' and \
   j[0]['request']['method'] == 'cowley2026' and j[0]['steps_done'] == 5 and \
   j[0]['stop_reason'] == 'COMPLETED' and j[0]['response'] > 0.1 and \
   j[0]['png'] == '$WORK/s_max.png' and j[0]['model']['demo'] is True"
expect_ok "synthesize min --json" "${SYN[@]}" --model demo --objective min --steps 5 --out "$WORK/s_min.png" --json
json_check "min: objective is minus the response" \
  "j[0]['request']['objective'] == 'min' and abs(j[0]['objective'] + j[0]['response']) < 1e-9"
expect_ok "synthesize population one-hot --json" "${SYN[@]}" --model demo_population \
  --objective population --targets 1 --mode one-hot --steps 12 --step-size 4 --out "$WORK/s_pop.png" --json
json_check "population: adam by default, target 1 becomes the largest of 4 outputs" \
  "j[0]['request']['method'] == 'adam' and j[0]['request']['targets'] == [1] and \
   j[0]['request']['mode'] == 'one-hot' and len(j[0]['outputs']) == 4 and \
   max(range(4), key=lambda k: j[0]['outputs'][k]) == 1 and 0.5 < j[0]['response'] <= 1"
expect_ok "synthesize channel --json" "${SYN[@]}" --model demo --objective channel --layer 0 \
  --channel 3 --steps 5 --out "$WORK/s_chan.png" --json
json_check "channel: layer and channel recorded, response is the channel mean" \
  "j[0]['request']['layer'] == 0 and j[0]['request']['channel'] == 3 and \
   j[0]['response'] > 0 and j[0]['request']['objective'] == 'channel'"
expect_ok "synthesize adversarial down --json" "${SYN[@]}" --model demo --objective adversarial \
  --init "$WORK/noise.png" --epsilon 4 --direction down --steps 8 --out "$WORK/s_adv.png" --json
json_check "adversarial: pgd, the init image by path and hash, response lowered" \
  "j[0]['request']['method'] == 'pgd' and j[0]['request']['direction'] == 'down' and \
   j[0]['request']['epsilon'] == 4 and j[0]['request']['norm'] == 'linf' and \
   j[0]['request']['init'] == 'image' and j[0]['request']['init_image'] == '$WORK/noise.png' and \
   len(j[0]['request']['init_image_sha256']) == 64 and j[0]['response'] < $NOISE_RESPONSE"
expect_ok "synthesize adversarial --target-response --json" "${SYN[@]}" --model demo \
  --objective adversarial --init "$WORK/noise.png" --target-response 1.5 --steps 8 \
  --out "$WORK/s_tgt.png" --json
json_check "adversarial target: direction target, moved toward 1.5" \
  "j[0]['request']['direction'] == 'target' and j[0]['request']['target_response'] == 1.5 and \
   abs(j[0]['response'] - 1.5) < abs($NOISE_RESPONSE - 1.5)"
expect_ok "replay of an adversarial record" "$STIMLOOP" replay "$WORK/s_adv.json"

expect_ok "synthesize --count 3" "${SYN[@]}" --model demo --objective max --steps 4 --count 3 \
  --seed 40 --out "$WORK/batch.png" --json
json_check "--count 3: three records, indices 0..2, seeds 40..42, PATH_k.png" \
  "[r['index'] for r in j] == [0, 1, 2] and [r['seed'] for r in j] == [40, 41, 42] and \
   [r['png'] for r in j] == ['$WORK/batch_%d.png' % k for k in range(3)] and \
   len(set(r['pixels_sha256'] for r in j)) == 3"
for k in 0 1 2; do
  if [ -s "$WORK/batch_$k.png" ] && [ -s "$WORK/batch_$k.json" ]; then pass "batch_$k.png and .json written"
  else fail "batch_$k.png or batch_$k.json missing"; fi
done
[ ! -e "$WORK/batch.png" ] && pass "no unsuffixed PNG with --count 3" || fail "batch.png written with --count 3"
python3 - "$WORK/batch_1.json" "$WORK/batch_1.png" <<'PY' && pass "record holds the contract's fields" || fail "record fields"
import hashlib, json, sys
r = json.load(open(sys.argv[1]))
for key in ['stimloop_version', 'created_utc', 'model', 'backend', 'request', 'index', 'seed',
            'steps_done', 'stop_reason', 'response', 'objective', 'trajectory', 'wall_ms', 'png',
            'png_sha256', 'pixels_sha256', 'width', 'height', 'outputs']:
    assert key in r, key
assert r['model']['id'] == 'demo' and len(r['model']['sha256']) == 64 and r['model']['demo'] is True
req = r['request']
for key in ['objective', 'method', 'steps', 'step_size', 'seed', 'count', 'grayscale', 'init',
            'trajectory_every', 'deadline_ms', 'display_size', 'output_index',
            'gradient_blur_sigma', 'image_blur_every', 'image_blur_sigma', 'diversity_weight']:
    assert key in req, key
assert req['objective'] == 'max' and req['method'] == 'cowley2026' and req['steps'] == 4
assert req['step_size'] == 10 and req['seed'] == 40 and req['count'] == 3
assert r['seed'] == 41 and r['index'] == 1 and r['steps_done'] == 4
assert r['stop_reason'] == 'COMPLETED' and r['backend'] == 'cpu'
assert r['trajectory'][-1][0] == 4 and isinstance(r['response'], float) and r['wall_ms'] > 0
assert r['width'] == 112 and r['height'] == 112 and len(r['outputs']) == 1
assert r['png_sha256'] == hashlib.sha256(open(sys.argv[2], 'rb').read()).hexdigest()
assert len(r['pixels_sha256']) == 64
PY

expect_ok "replay of a record exits 0" "$STIMLOOP" replay "$WORK/batch_1.json"
grep -q "batch_1.json: identical" "$WORK/out" && pass "replay prints identical" || \
  fail "replay output: $(cat "$WORK/out")"
expect_ok "replay --json" "$STIMLOOP" replay --json "$WORK/batch_2.json"
json_check "replay --json says identical" "j['identical'] is True and j['pixels_identical'] is True"

# Tampered records: replay must not vouch for them.
expect_replay_different() {
  local name=$1 record=$2 rc=0
  "$STIMLOOP" replay "$record" >"$WORK/out" 2>"$WORK/err" || rc=$?
  if [ "$rc" -eq 1 ] && grep -q "DIFFERENT" "$WORK/out"; then pass "$name"
  elif [ "$rc" -ne 0 ] && grep -qi "seed" "$WORK/err"; then pass "$name (rejected)"
  else fail "$name: exit $rc: $(cat "$WORK/out" "$WORK/err")"; fi
}
python3 -c "
import json; r = json.load(open('$WORK/batch_1.json')); r['request']['seed'] = 7
json.dump(r, open('$WORK/tampered.json', 'w'))"
expect_replay_different "replay of a record with a changed request seed: exit 1, DIFFERENT" "$WORK/tampered.json"
python3 -c "
import json; r = json.load(open('$WORK/batch_1.json')); r['seed'] = 7
json.dump(r, open('$WORK/tampered_seed.json', 'w'))"
expect_replay_different "replay of a record with a changed stimulus seed is not 'identical'" "$WORK/tampered_seed.json"

expect_ok "synthesize --display-size 224" "${SYN[@]}" --model demo --objective max --steps 2 \
  --display-size 224 --out "$WORK/big.png" --json
python3 - "$WORK/big.png" <<'PY' && pass "--display-size 224 writes a 224x224 PNG" || fail "display size"
import struct, sys
data = open(sys.argv[1], 'rb').read()
assert data[:8] == b'\x89PNG\r\n\x1a\n' and data[12:16] == b'IHDR'
assert struct.unpack('>II', data[16:24]) == (224, 224)
PY
json_check "--display-size: the record names the PNG's size" \
  "j[0]['width'] == 224 and j[0]['height'] == 224 and j[0]['request']['display_size'] == 224"
expect_ok "replay of an upscaled record" "$STIMLOOP" replay "$WORK/big.json"

start_ms=$(date +%s%3N)
expect_ok "--deadline-ms 1 on a 1000-step run" "${SYN[@]}" --model demo --objective max \
  --steps 1000 --deadline-ms 1 --out "$WORK/late.png" --json
elapsed_ms=$(( $(date +%s%3N) - start_ms ))
json_check "--deadline-ms: stop_reason DEADLINE, few steps" \
  "j[0]['stop_reason'] == 'DEADLINE' and j[0]['steps_done'] < 1000 and \
   j[0]['request']['deadline_ms'] == 1"
[ "$elapsed_ms" -lt 5000 ] && pass "--deadline-ms 1 returns quickly (${elapsed_ms} ms)" || \
  fail "--deadline-ms 1 took ${elapsed_ms} ms"
expect_ok "replay of a DEADLINE record" "$STIMLOOP" replay "$WORK/late.json"

# Bad synthesis input: non-zero exit and a message naming the flag.
expect_error "synthesize --steps 0" "--steps" "${SYN[@]}" --model demo --objective max --steps 0 --out "$WORK/e.png"
expect_error "synthesize --steps 99999999" "--steps" "${SYN[@]}" --model demo --objective max --steps 99999999 --out "$WORK/e.png"
expect_error "synthesize --count 0" "--count" "${SYN[@]}" --model demo --objective max --count 0 --out "$WORK/e.png"
expect_error "synthesize --objective bogus" "--objective 'bogus'" "${SYN[@]}" --model demo --objective bogus --out "$WORK/e.png"
expect_error "synthesize --method pgd with max" "--method pgd" "${SYN[@]}" --model demo --objective max --method pgd --out "$WORK/e.png"
expect_error "population on the 1-output demo" "--objective population.*1 output" "${SYN[@]}" --model demo --objective population --targets 0 --out "$WORK/e.png"
expect_error "--targets 9 on demo_population" "--targets index 9" "${SYN[@]}" --model demo_population --objective population --targets 9 --out "$WORK/e.png"
expect_error "--out x.jpg" "--out" "${SYN[@]}" --model demo --objective max --steps 2 --out "$WORK/x.jpg"
expect_error "adversarial without --init" "--init" "${SYN[@]}" --model demo --objective adversarial --out "$WORK/e.png"
expect_error "--direction and --target-response together" "--direction.*--target-response" "${SYN[@]}" --model demo --objective adversarial --init "$WORK/noise.png" --direction up --target-response 3 --out "$WORK/e.png"
[ ! -e "$WORK/e.png" ] && [ ! -e "$WORK/x.jpg" ] && pass "rejected requests write no files" || fail "a rejected request wrote a file"

# Published models, when present: STIMLOOP_MODELS is the default directory.
DATA=${STIMLOOP_V4_DATA:-$(dirname "$0")/../../../shared/v4}
if [ -f "$DATA/compact_models/compact_model_190923_neuron0.keras" ]; then
  expect_ok "STIMLOOP_MODELS selects the directory" env STIMLOOP_MODELS="$DATA/compact_models" \
    "$STIMLOOP" predict --model compact_model_190923_neuron0 --json "$DATA/golden/images/g00.png"
  json_check "published model prediction matches golden g00 (-0.0162824)" \
    "abs(j['responses'][0][0] - (-0.01628244)) < 1e-4 and j['demo'] is False"
  expect_ok "shared model via --models" "$STIMLOOP" predict --models "$DATA/shared_compact_models" \
    --model shared_compact_model_5filters --json "$DATA/golden/images/g00.png"
  json_check "shared model gives 219 outputs" "j['outputs'] == 219 and len(j['responses'][0]) == 219"
else
  echo "SKIPPED (published-model CLI checks): no data at $DATA; set STIMLOOP_V4_DATA"
fi

# Remote mode: the same commands through a stimloop-server on an ephemeral loopback port.
SERVER="$(dirname "$STIMLOOP")/stimloop-server"
if [ -x "$SERVER" ]; then
  mkdir -p "$WORK/pool"
  for o in 0 45 90 135; do
    "$STIMLOOP" test-image --out "$WORK/pool/g$o.png" --orientation "$o" >/dev/null
  done
  "$SERVER" --listen 127.0.0.1:0 --backend cpu --log-level warn --data-dir "$WORK/sessions" \
    --pool "cli=$WORK/pool" >"$WORK/server.out" 2>"$WORK/server.err" &
  server_pid=$!
  trap 'kill $server_pid 2>/dev/null; rm -rf "$WORK"' EXIT
  port=""
  for _ in $(seq 100); do
    port=$(sed -n 's/.*listening on port \([0-9]*\).*/\1/p' "$WORK/server.out")
    [ -n "$port" ] && break
    sleep 0.1
  done
  if [ -z "$port" ]; then
    fail "stimloop-server did not start: $(cat "$WORK/server.err")"
  else
    remote=(--server "127.0.0.1:$port")
    "$STIMLOOP" predict --model demo --json "$WORK/vertical.png" "$WORK/noise.png" >"$WORK/local.json"
    expect_ok "remote predict --json" "$STIMLOOP" "${remote[@]}" predict --model demo --json \
      "$WORK/vertical.png" "$WORK/noise.png"
    if cmp -s "$WORK/out" "$WORK/local.json"; then pass "remote predict --json is byte-identical to local"
    else fail "remote predict differs: $(cat "$WORK/out") vs $(cat "$WORK/local.json")"; fi
    expect_ok "remote models --json" "$STIMLOOP" "${remote[@]}" models --json
    json_check "remote models lists the server's models" \
      "[m['id'] for m in j['models']] == ['demo', 'demo_population']"
    expect_ok "remote synthesize" "$STIMLOOP" "${remote[@]}" synthesize --model demo --objective max \
      --steps 40 --seed 5 --out "$WORK/remote.png" --no-progress
    expect_ok "local synthesize" "$STIMLOOP" synthesize --model demo --objective max --steps 40 \
      --seed 5 --out "$WORK/local.png" --no-progress
    if cmp -s "$WORK/remote.png" "$WORK/local.png"; then pass "remote stimulus is byte-identical to local"
    else fail "remote and local stimuli differ"; fi
    expect_ok "replay of a remote record" "$STIMLOOP" replay "$WORK/remote.json"
    expect_ok "remote synthesize --priority rig --deadline-ms" "$STIMLOOP" "${remote[@]}" \
      --priority rig synthesize --model demo --objective max --steps 100000 --deadline-ms 200 \
      --out "$WORK/rig.png" --json
    json_check "a deadline gives a stimulus with stop reason DEADLINE" \
      "j[0]['stop_reason'] == 'DEADLINE' and 0 < j[0]['steps_done'] < 100000"
    expect_error "remote unknown model" "unknown model 'nope'.*NOT_FOUND" \
      "$STIMLOOP" "${remote[@]}" predict --model nope "$WORK/vertical.png"
    expect_error "remote bad option" "steps.*outside" \
      "$STIMLOOP" "${remote[@]}" synthesize --model demo --objective max --steps 0 --out "$WORK/x.png"

    # Closed-loop sessions from the shell.
    expect_ok "session open" "$STIMLOOP" "${remote[@]}" session open --session cli1 \
      --base-model demo_population --pool cli --channel a --channel b
    json_check "session open answers the session" "j['session_id'] == 'cli1' and j['state'] == 'OPEN'"
    expect_ok "session next" "$STIMLOOP" "${remote[@]}" session next --session cli1 --count 3 \
      --block-id b0 --out-dir "$WORK/block"
    json_check "session next lists 3 stimuli, images written apart" \
      "len(j['stimuli']) == 3 and all('data' not in s['image'] for s in j['stimuli'])"
    python3 -c "
import json; b = json.load(open('$WORK/out'))
json.dump([{'stimulus_id': s['stimulus_id'], 'responses': [1.5, 2]} for s in b['stimuli']],
          open('$WORK/trials.json', 'w'))"
    [ "$(ls "$WORK/block"/*.png | wc -l)" -eq 3 ] && pass "session next wrote 3 PNGs" ||
      fail "session next did not write 3 PNGs"
    expect_ok "session report" "$STIMLOOP" "${remote[@]}" session report --session cli1 \
      --trials "$WORK/trials.json"
    json_check "session report stored 3 trials" "j['stored'] == 3 and j['total_trials'] == 3"
    expect_ok "session report retried" "$STIMLOOP" "${remote[@]}" session report --session cli1 \
      --trials "$WORK/trials.json"
    json_check "a retried report stores nothing twice" "j['duplicates'] == 3 and j['total_trials'] == 3"
    expect_error "session report, unknown stimulus" "trials\\[0\\].stimulus_id.*INVALID_ARGUMENT" \
      bash -c "echo '[{\"stimulus_id\": \"zz\", \"responses\": [1, 1]}]' |
        '$STIMLOOP' ${remote[*]} session report --session cli1 --trials -"
    expect_ok "session list" "$STIMLOOP" "${remote[@]}" session list
    json_check "session list holds the session" "[s['session_id'] for s in j['sessions']] == ['cli1']"
    expect_ok "session close" "$STIMLOOP" "${remote[@]}" session close --session cli1
    json_check "session close closes" "j['state'] == 'CLOSED'"
  fi
  expect_error "session commands need a server" "--server" "$STIMLOOP" session get --session x
  kill "$server_pid" 2>/dev/null
  wait "$server_pid" 2>/dev/null
  expect_error "no server listening" "UNAVAILABLE" "$STIMLOOP" --server "127.0.0.1:$port" models
else
  echo "SKIPPED (remote mode): $SERVER not built"
fi

if [ "$failures" -ne 0 ]; then echo "$failures CLI check(s) failed"; exit 1; fi
echo "all CLI checks passed"
