#!/usr/bin/env bash
# The state store's PostgreSQL backend passes the same tests as SQLite:
# ledger and cursor specs, cursor / run-history semantics, the runner.
source "$(dirname "$0")/testlib.bash" "$@"
root=$(cd "$(dirname "$0")/../.." && pwd)
cat > "$TMP/inner.sh" <<SH
set -u
export WEIR_STORE_URL="\$WEIR_PG_DSN"
status=0
"$WEIR" test "$root/tests/lua/ledger_spec.lua" "$root/tests/lua/cursor_spec.lua" || status=1
bash "$root/tests/cli/state.sh" "$WEIR" || status=1
bash "$root/tests/cli/jobs.sh" "$WEIR" || status=1
# the backend really is PostgreSQL: the tables live in schema weir
psql "\$WEIR_PG_DSN" -Atc "select count(*) from weir.runs" | grep -qE '^[1-9]' || { echo "no runs in weir.runs"; status=1; }
psql "\$WEIR_PG_DSN" -Atc "select max(version) from weir.weir_migrations" | grep -qx 2 || { echo "migrations not at 2"; status=1; }
exit \$status
SH
LAST_CMD="pg.sh with inner.sh"
timeout 280 "$root/tests/harness/pg.sh" with bash "$TMP/inner.sh" >"$TMP/.out" 2>"$TMP/.err"
RC=$?; OUT=$(cat "$TMP/.out"); ERR=$(cat "$TMP/.err")
expect_rc 0 "ledger, cursor, state and jobs suites on the PostgreSQL store"
expect_out '^[0-9]+ passed, 0 failed$' "specs ran"
finish
