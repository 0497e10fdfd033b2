#!/usr/bin/env bash
# The CLI never leaves half a pair: output paths are checked before any synthesis runs, a PNG and
# its record are written whole or not at all (a full disk included), and a path that is a
# directory or unreadable is reported as what it is.
# Usage: cli_outputs_test.sh PATH/TO/stimloop
set -u
STIMLOOP=${1:?usage: cli_outputs_test.sh PATH/TO/stimloop}
WORK=$(mktemp -d)
trap 'chmod -R u+rwx "$WORK"; rm -rf "$WORK"' EXIT
unset STIMLOOP_MODELS
source "$(dirname "$0")/cli_lib.sh"

# absent NAME PATH... : none of the paths exists
absent() {
  local name=$1; shift
  for p in "$@"; do [ -e "$p" ] && { fail "$name: $p was left behind"; return; }; done
  pass "$name"
}
# no_temporaries NAME DIR : no temporary file left in DIR
no_temporaries() {
  if ls -A "$2" | grep -q '\.tmp-'; then fail "$1: temporaries left: $(ls -A "$2")"; else pass "$1"; fi
}
SYN=("$STIMLOOP" synthesize --no-progress --model demo --objective max)
# A synthesis long enough that finding a bad path only after it would be noticed (and stopped).
LONG=(timeout 30 "${SYN[@]}" --steps 100000)
"$STIMLOOP" test-image --out "$WORK/g.png" >/dev/null

# ---- a directory where an output belongs: refused before the synthesis, nothing written
mkdir "$WORK/adir.png" "$WORK/x.json"
start=$(date +%s)
expect_error "--out naming a directory" "adir.png is a directory.*FAILED_PRECONDITION" \
  "${LONG[@]}" --out "$WORK/adir.png"
[ $(( $(date +%s) - start )) -lt 10 ] && pass "refused before the synthesis ran" \
  || fail "the directory was found only after the synthesis"
absent "no record beside a directory --out" "$WORK/adir.json"
expect_error "record path naming a directory" "x.json is a directory" \
  "${LONG[@]}" --out "$WORK/x.png"
absent "no PNG when its record cannot be written" "$WORK/x.png"
mkdir -p "$WORK/y_2.json"
expect_error "--count: a later record path is a directory" "y_2.json is a directory" \
  "${SYN[@]}" --steps 3 --count 3 --out "$WORK/y.png"
absent "nothing of the batch written" "$WORK/y_0.png" "$WORK/y_0.json" "$WORK/y_1.png"
expect_error "--out in a missing directory" "directory .*/nowhere does not exist" \
  "${SYN[@]}" --steps 3 --out "$WORK/nowhere/s.png"
expect_error "gradient --out naming a directory" "adir.png is a directory" \
  "$STIMLOOP" gradient --model demo --image "$WORK/g.png" --out "$WORK/adir.png"

# ---- a directory given as a model or an image is reported as a directory
mkdir "$WORK/folder.keras" "$WORK/img.png"
expect_error "a directory as --model" "model file .*folder.keras is a directory" \
  "$STIMLOOP" predict --model "$WORK/folder.keras" "$WORK/g.png"
expect_error "a directory as an image" "image .*img.png is a directory" \
  "$STIMLOOP" predict --model demo "$WORK/img.png"
expect_error "a directory as --init" "image .*img.png is a directory" \
  "${SYN[@]}" --steps 3 --init "$WORK/img.png" --out "$WORK/i.png"

# ---- a full disk (the file size limit stands in for it): an error, and neither file
(
  trap '' XFSZ
  ulimit -f 64
  "${SYN[@]}" --steps 2 --display-size 1024 --count 2 --out "$WORK/full.png"
) >"$WORK/out" 2>"$WORK/err"
status=$?
if [ $status -ne 0 ] && grep -q "RESOURCE_EXHAUSTED" "$WORK/err"; then
  pass "a full disk is reported as RESOURCE_EXHAUSTED"
else
  fail "a full disk: exit $status, $(cat "$WORK/err")"
fi
absent "a full disk leaves no half pair" "$WORK/full_0.png" "$WORK/full_0.json"
no_temporaries "a full disk leaves no temporaries" "$WORK"
(trap '' XFSZ; ulimit -f 64; "$STIMLOOP" test-image --out "$WORK/big.png" --kind noise --size 1024) \
  >"$WORK/out" 2>"$WORK/err"
grep -q "RESOURCE_EXHAUSTED" "$WORK/err" && pass "test-image on a full disk" \
  || fail "test-image on a full disk: $(cat "$WORK/err")"
absent "test-image leaves no torn PNG" "$WORK/big.png"

# ---- permissions (as an unprivileged user: root reads and writes everything)
as_user=()
if [ "$(id -u)" = 0 ]; then
  if ! command -v setpriv >/dev/null; then echo "SKIPPED: root without setpriv"; exit 77; fi
  as_user=(setpriv --reuid=65534 --regid=65534 --clear-groups)
  chmod 755 "$WORK"
fi
mkdir "$WORK/ro"
chmod 555 "$WORK/ro"
expect_error "--out in a read-only directory" "cannot create files in .*ro.*PERMISSION_DENIED" \
  "${as_user[@]}" "${SYN[@]}" --steps 3 --out "$WORK/ro/s.png"
cp "$WORK/g.png" "$WORK/locked.png"
chmod 444 "$WORK/locked.png"
expect_error "a read-only --out file" "locked.png is not writable.*PERMISSION_DENIED" \
  "${as_user[@]}" "$STIMLOOP" test-image --out "$WORK/locked.png"
cp "$WORK/g.png" "$WORK/secret.png"
chmod 000 "$WORK/secret.png"
expect_error "an unreadable image" "secret.png cannot be read.*PERMISSION_DENIED" \
  "${as_user[@]}" "$STIMLOOP" predict --model demo "$WORK/secret.png"

echo "failures: $failures"
[ "$failures" -eq 0 ]
