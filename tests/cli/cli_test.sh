#!/usr/bin/env bash
# Command-line contract tests: the spellings and output formats other scripts rely on.
# Usage: cli_test.sh PATH/TO/stimloop
set -u
STIMLOOP=${1:?usage: cli_test.sh PATH/TO/stimloop}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
unset STIMLOOP_MODELS
failures=0

pass() { echo "ok   - $1"; }
fail() { echo "FAIL - $1"; failures=$((failures + 1)); }

# expect_ok NAME CMD... : command must exit 0
expect_ok() {
  local name=$1; shift
  if "$@" >"$WORK/out" 2>"$WORK/err"; then pass "$name"; else
    fail "$name (exit $?): $(cat "$WORK/err")"; fi
}
# expect_error NAME PATTERN CMD... : command must exit non-zero and stderr must match PATTERN
expect_error() {
  local name=$1 pattern=$2; shift 2
  if "$@" >"$WORK/out" 2>"$WORK/err"; then fail "$name: exited 0"; return; fi
  if grep -qE -- "$pattern" "$WORK/err"; then pass "$name"; else
    fail "$name: stderr lacks /$pattern/: $(cat "$WORK/err")"; fi
}
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
expect_error "missing image" "not found" "$STIMLOOP" predict --model demo "$WORK/none.png"
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

if [ "$failures" -ne 0 ]; then echo "$failures CLI check(s) failed"; exit 1; fi
echo "all CLI checks passed"
