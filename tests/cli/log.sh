#!/usr/bin/env bash
# weir.log: JSON lines on stderr or a file, levels, secret redaction in
# logs and in the errors the CLI prints.
source "$(dirname "$0")/testlib.bash" "$@"

write logs.lua <<'LUA'
local log = require "weir.log"
log.secret("hunter2-very-secret")
log.secret('quo"te\\secret')
log.info("hello", {n = 1, who = "me"})
log.debug("hidden at info")
log.warn("leaking hunter2-very-secret and quo\"te\\secret", {token = "hunter2-very-secret"})
error("failed with hunter2-very-secret")
LUA
run_weir run "$TMP/logs.lua"
expect_rc 1 "a failing script exits 1"
expect_err '^\{"time":"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z","level":"info","recipe":"logs.lua","job":"[0-9]+","msg":"hello","n":1,"who":"me"\}$' "info line is one JSON object with sorted fields"
if printf '%s' "$ERR" | grep -q "hidden at info"; then fail "debug line must be filtered at info"; else pass; fi
if printf '%s' "$ERR" | grep -q "hunter2"; then fail "secret leaked to stderr"; else pass; fi
if printf '%s' "$ERR" | grep -q 'te\\\\secret\|te\\secret'; then fail "escaped secret leaked"; else pass; fi
expect_err '"level":"warn".*\[REDACTED\]' "warn line redacted"
expect_err 'logs.lua:7: failed with \[REDACTED\]' "the CLI's error message is redacted too"

# every stderr line that starts with { must parse as JSON
printf '%s\n' "$ERR" | grep '^{' > "$TMP/lines.jsonl"
if python3 -c 'import json,sys; [json.loads(l) for l in open(sys.argv[1])]' "$TMP/lines.jsonl"; then pass; else fail "log lines are not valid JSON"; fi

# --log-file and --log-level
run_weir run --log-file "$TMP/out.log" --log-level debug "$TMP/logs.lua"
expect_rc 1 "still fails"
if grep -q '"msg":"hidden at info"' "$TMP/out.log"; then pass; else fail "debug line in the log file"; fi
if grep -q hunter2 "$TMP/out.log"; then fail "secret leaked to the log file"; else pass; fi

run_weir run --log-level loud "$TMP/logs.lua"
expect_rc 2 "an unknown level is a usage error"
expect_err "debug, info, warn, error" "the message lists the levels"
finish
