# Shared by the CLI test scripts: pass/fail counting and the expect_* checks. The caller sets
# WORK (a scratch directory); commands' stdout and stderr land in $WORK/out and $WORK/err.
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
