#!/usr/bin/env bash
# pg.sh WEIR -- weir.pg end to end against a throwaway PostgreSQL server
# (tests/harness/pg.sh): the specs of tests/pg/, `weir run` ending with
# idle pooled connections and an open listener, and a script that fails
# inside db:tx (exit 1, the error's message, nothing committed).
source "$(dirname "$0")/testlib.bash" "$@"
root=$(cd "$(dirname "$0")/../.." && pwd)
harness=$root/tests/harness/pg.sh

# 1. the specs (they live outside tests/lua/ because they need a server)
LAST_CMD="pg.sh with weir test tests/pg/"
timeout 280 "$harness" with "$WEIR" test "$root/tests/pg/" >"$TMP/.out" 2>"$TMP/.err" </dev/null
RC=$?
OUT=$(cat "$TMP/.out")
ERR=$(cat "$TMP/.err")
expect_rc 0 "tests/pg specs"
last=$(printf '%s\n' "$OUT" | tail -n 1)
if [[ $last =~ ^[1-9][0-9]*\ passed,\ 0\ failed$ ]]; then pass
else fail "tests/pg: expected 'N passed, 0 failed' as the last line"; fi
printf '%s\n' "$OUT" | grep -E '^(copy_in|upsert):' >&2   # measured rates, for the log
printf '%s\n' "$OUT" | grep -A3 '^FAIL' >&2                 # which spec, if any

# 2. a server of our own for the scripts below
#    (in its own directory: $TMP is private to us, the server runs as
#    another user when we are root)
srv=$(mktemp -d /tmp/weir-pgcli.XXXXXX) || exit 1
trap '"$harness" stop "$srv"; rm -rf "$srv" "$TMP"' EXIT
env_lines=$("$harness" start "$srv") || { echo "pg.sh: cannot start PostgreSQL" >&2; exit 1; }
eval "$env_lines"
export WEIR_PG_DSN WEIR_ENV_ALLOW=WEIR_PG_DSN

write idle.lua <<'LUA'
local pg = require "weir.pg"
local db = pg.connect(os.getenv("WEIR_PG_DSN"), {size = 3})
local l = assert(db:listen("idle_channel"))      -- left open on purpose
assert(db:query("CREATE TABLE IF NOT EXISTS cli_t (id int PRIMARY KEY)"))
local st = db:stats()
return db:query("SELECT 40 + 2 AS answer")[1].answer, st.idle
LUA
run_weir run "$TMP/idle.lua"
expect_rc 0 "weir run with idle pooled connections and a listener"
expect_out '^42$' "the script's first result"

write fails_in_tx.lua <<'LUA'
local pg = require "weir.pg"
local db = pg.connect(os.getenv("WEIR_PG_DSN"))
db:tx(function(tx)
  assert(tx:query("INSERT INTO cli_t VALUES (1)"))
  local _, err = tx:query("INSERT INTO cli_t VALUES ('x')")
  error(err)
end)
LUA
run_weir run "$TMP/fails_in_tx.lua"
expect_rc 1 "a script failing inside db:tx"
expect_err 'invalid input syntax for type integer' "the SQL error's message on stderr"

write count.lua <<'LUA'
local pg = require "weir.pg"
return pg.connect(os.getenv("WEIR_PG_DSN")):query("SELECT count(*) AS n FROM cli_t")[1].n
LUA
run_weir run "$TMP/count.lua"
expect_rc 0 "counting rows"
expect_last_line '0' "nothing was committed by the failed transaction"

finish
