#!/usr/bin/env bash
# redis.sh WEIR -- weir.redis end to end against a throwaway redis-server
# (tests/harness/redis.sh): the specs of tests/redis/, a server restart
# while a script waits in BLPOP, and `weir run` ending with an idle
# connection open.
source "$(dirname "$0")/testlib.bash" "$@"
root=$(cd "$(dirname "$0")/../.." && pwd)
harness=$root/tests/harness/redis.sh

if ! command -v redis-server >/dev/null; then
    echo "redis.sh: redis-server is not installed (scripts/setup.sh installs it)" >&2
    exit 1
fi

# 1. the specs (they live outside tests/lua/ because they need a server)
LAST_CMD="redis.sh with weir test tests/redis/"
timeout 240 "$harness" with "$WEIR" test "$root/tests/redis/" >"$TMP/.out" 2>"$TMP/.err" </dev/null
RC=$?
OUT=$(cat "$TMP/.out")
ERR=$(cat "$TMP/.err")
expect_rc 0 "tests/redis specs"
last=$(printf '%s\n' "$OUT" | tail -n 1)
if [[ $last =~ ^[1-9][0-9]*\ passed,\ 0\ failed$ ]]; then pass
else fail "tests/redis: expected 'N passed, 0 failed' as the last line"; fi

# 2. restart mid-run: an in-flight BLPOP fails with a retryable connection
#    error; later commands succeed once the client reconnected
srv=$TMP/server
line=$("$harness" start "$srv") || { echo "cannot start redis-server" >&2; exit 1; }
export WEIR_REDIS_URL=${line#export WEIR_REDIS_URL=}
export WEIR_ENV_ALLOW=WEIR_REDIS_URL
port=$(cat "$srv/port")
trap '"$harness" stop "$srv"; rm -rf "$TMP"' EXIT

write restart.lua <<'LUA'
local redis = require "weir.redis"
local task = require "weir.task"
local c = assert(redis.connect(os.getenv("WEIR_REDIS_URL")))
assert(c:call("SET", "restart:before", "1") == "OK")
local v, err = c:call("BLPOP", "restart:q", 0)     -- the server goes away meanwhile
local first = {value = v, kind = err and err.kind, retryable = err and err.retryable}
-- retry on retryable errors, as a connector would (bounded)
local pong, attempts = nil, 0
repeat
  attempts = attempts + 1
  local e
  pong, e = c:call("PING")
  if not pong then
    assert(e.retryable, e.message)
    task.sleep(0.02)
  end
until pong or attempts == 500
local st = c:stats()
return {
  first = first, pong = pong,
  before = c:call("GET", "restart:before") or "gone",   -- no persistence: gone
  set = c:call("SET", "restart:after", "2"),
  drops = st.drops, busy = st.blocking_busy,
}
LUA
LAST_CMD="weir run restart.lua (server restarted while it waits)"
timeout 60 "$WEIR" run "$TMP/restart.lua" >"$TMP/.out" 2>"$TMP/.err" </dev/null &
pid=$!
blocked=0
for _ in $(seq 1 500); do
    if redis-cli -p "$port" INFO clients 2>/dev/null | grep -q '^blocked_clients:1'; then
        blocked=1
        break
    fi
    sleep 0.02
done
if [ "$blocked" = 1 ]; then pass; else fail "the script never blocked in BLPOP"; fi
"$harness" restart "$srv" >/dev/null || fail "restarting redis-server"
wait "$pid"
RC=$?
OUT=$(cat "$TMP/.out")
ERR=$(cat "$TMP/.err")
expect_rc 0 "script survives a redis-server restart"
if /usr/bin/python3 -c '
import json, sys
r = json.loads(sys.argv[1])
ok = (r["first"] == {"kind": "connection", "retryable": True}
      and r["pong"] == "PONG" and r["before"] == "gone" and r["set"] == "OK"
      and r["drops"] >= 1 and r["busy"] == 0)
sys.exit(0 if ok else 1)
' "$OUT" 2>/dev/null; then
    pass
else
    fail "in-flight BLPOP fails retryable, then commands succeed after reconnect"
fi

# 3. an idle connection does not keep `weir run` alive
write idle.lua <<'LUA'
local redis = require "weir.redis"
local c = assert(redis.connect(os.getenv("WEIR_REDIS_URL")))
local sub = assert(c:subscribe("idle:channel"))     -- left open on purpose
return c:call("PING")
LUA
run_weir run "$TMP/idle.lua"
expect_rc 0 "weir run with idle redis connections"
expect_last_line '"PONG"' "the script's result"

finish
