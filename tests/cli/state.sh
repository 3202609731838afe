#!/usr/bin/env bash
# Cursors advance only when the run succeeds; runs are recorded; the
# cursor and runs commands read and reset what the store holds.
source "$(dirname "$0")/testlib.bash" "$@"
export WEIR_DATA_DIR="$TMP/data"

write feed.lua <<'LUA'
local cursor = require "weir.cursor"
local weir = require "weir"
local params = ...
local pos = cursor.get("feed") or 0
weir.count("read", 5)
weir.count("written", 4)
weir.count("skipped", 1)
cursor.set("feed", pos + 1)
if params.fail then error("failing after moving the cursor") end
return pos + 1
LUA
run_weir run "$TMP/feed.lua";               expect_out '^1$' "first run starts at 0"
run_weir run "$TMP/feed.lua";               expect_out '^2$' "second run continues"
run_weir run "$TMP/feed.lua" --set fail=1;  expect_rc 1 "a failing run"
run_weir run "$TMP/feed.lua";               expect_out '^3$' "the failed run did not advance the cursor"

run_weir cursor show feed.lua
expect_rc 0 "cursor show"
expect_out 'source=feed  value=3' "the committed value"
run_weir cursor show feed.lua --json
expect_out '"source":"feed","value":"3"' "cursor show --json"

run_weir runs feed.lua --limit 2
expect_rc 0 "runs"
expect_out 'status=succeeded.*read=5  written=4  skipped=1  failed=0' "counts recorded"
run_weir runs --failed --json
expect_out '"status":"failed"' "failed runs listed"
expect_out 'failing after moving the cursor' "with their error"
if [ "$(printf '%s\n' "$OUT" | grep -c '"status"')" = 1 ]; then pass; else fail "exactly one failed run"; fi

run_weir cursor reset feed.lua feed
expect_rc 0 "cursor reset"
run_weir run "$TMP/feed.lua";               expect_out '^1$' "after reset the run starts over"

run_weir cursor frobnicate x
expect_rc 2 "unknown cursor action is a usage error"
run_weir runs --limit zero
expect_rc 2 "bad --limit is a usage error"

# a store that cannot be opened costs a warning, not the script's result
run_weir run "$TMP/feed.lua" --store /proc/nope/weir.db
expect_rc 1 "cursor use with an unusable store fails the run"
expect_err "cursor" "the error names the module"
write plain.lua <<'LUA'
return "ok"
LUA
run_weir run "$TMP/plain.lua" --store /proc/nope/weir.db
expect_rc 0 "a script that does not use the store still succeeds"
expect_err "warning: run not recorded" "with a warning"
finish
