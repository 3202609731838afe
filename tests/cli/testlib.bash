# testlib.bash -- helpers sourced by tests/cli/*.sh (not a test itself).
#
#   source "$(dirname "$0")/testlib.bash" "$@"
#   run_weir run x.lua      -> sets RC, OUT (stdout), ERR (stderr)
#   expect_rc 0 "what"; expect_out "regex" "what"; expect_err ...
#   finish                  -> exit 1 when any check failed
#
# Every weir run is bounded by `timeout` so a hang fails the check instead
# of eating ctest's whole timeout.
set -u

WEIR=${1:-}
if [ -z "$WEIR" ] || [ ! -x "$WEIR" ]; then
    echo "usage: $0 PATH_TO_WEIR_BINARY (got '${WEIR}')" >&2
    exit 2
fi
WEIR=$(cd "$(dirname "$WEIR")" && pwd)/$(basename "$WEIR")

TMP=$(mktemp -d "${TMPDIR:-/tmp}/weir-cli.XXXXXX") || exit 1
trap 'rm -rf "$TMP"' EXIT
CHECKS=0
FAILS=0
RC=0
OUT=
ERR=
LAST_CMD=

fail() {
    FAILS=$((FAILS + 1))
    {
        echo "FAIL: $*"
        echo "  command: $LAST_CMD"
        echo "  exit:    $RC"
        echo "  stdout:  $(printf '%s' "$OUT" | head -c 2000 | sed '2,$s/^/           /')"
        echo "  stderr:  $(printf '%s' "$ERR" | head -c 2000 | sed '2,$s/^/           /')"
    } >&2
}

pass() {
    CHECKS=$((CHECKS + 1))
}

# run_weir ARGS... : runs the binary with a 60 s bound, stdin closed.
run_weir() {
    LAST_CMD="weir $*"
    timeout 60 "$WEIR" "$@" >"$TMP/.out" 2>"$TMP/.err" </dev/null
    RC=$?
    OUT=$(cat "$TMP/.out")
    ERR=$(cat "$TMP/.err")
    if [ "$RC" -eq 124 ]; then
        fail "timed out after 60 s"
    fi
}

expect_rc() {
    if [ "$RC" -eq "$1" ]; then pass; else fail "$2: expected exit $1"; fi
}

expect_rc_nonzero() {
    if [ "$RC" -ne 0 ] && [ "$RC" -ne 124 ]; then pass; else fail "$1: expected a non-zero exit"; fi
}

# expect_out REGEX WHAT (extended regex, grep -E, any line)
expect_out() {
    if printf '%s\n' "$OUT" | grep -Eq -- "$1"; then pass; else fail "$2: stdout does not match /$1/"; fi
}

expect_err() {
    if printf '%s\n' "$ERR" | grep -Eq -- "$1"; then pass; else fail "$2: stderr does not match /$1/"; fi
}

expect_err_ci() {
    if printf '%s\n' "$ERR" | grep -Eiq -- "$1"; then pass; else fail "$2: stderr does not match /$1/i"; fi
}

expect_no_out() {
    if printf '%s\n' "$OUT" | grep -Eq -- "$1"; then fail "$2: stdout should not match /$1/"; else pass; fi
}

# expect_last_line TEXT WHAT: the last line of stdout is exactly TEXT.
expect_last_line() {
    local last
    last=$(printf '%s\n' "$OUT" | tail -n 1)
    if [ "$last" = "$1" ]; then pass; else fail "$2: last stdout line is '$last', expected '$1'"; fi
}

# write FILE <<'EOF' ... : creates FILE under $TMP (directories too).
write() {
    mkdir -p "$(dirname "$TMP/$1")"
    cat >"$TMP/$1"
}

finish() {
    if [ "$FAILS" -gt 0 ]; then
        echo "$(basename "$0"): $FAILS of $((CHECKS + FAILS)) checks failed" >&2
        exit 1
    fi
    echo "$(basename "$0"): all $CHECKS checks passed"
    exit 0
}
