#!/usr/bin/env bash
# msgraph_e2e.sh WEIR -- the msgraph connector against the Graph mock.
#
# Specs cannot start processes, so this test starts tests/mocks/
# graph_mock.py itself (port file, bounded wait), exports GRAPH_MOCK_URL
# (allowed through WEIR_ENV_ALLOW) and runs:
#   - tests/lua/msgraph_spec.lua with the Graph part enabled;
#   - examples/m365_users.lua (full + incremental delta sync);
#   - secret redaction and the wrong-secret failure through `weir run`;
#   - scripts/demo.sh --skip-setup with this binary.
source "$(dirname "$0")/testlib.bash" "$@"

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3

TENANT=weir-test-tenant
CLIENT_ID=00000000-0000-4000-8000-00000000c11e
SECRET='mock-secret-Q8~weir.graph'

mock_pid=
stop_mock() {
    if [ -n "$mock_pid" ]; then
        kill -TERM "$mock_pid" 2>/dev/null
        wait "$mock_pid" 2>/dev/null
        mock_pid=
    fi
}
trap 'stop_mock; rm -rf "$TMP"' EXIT

"$PY" "$ROOT/tests/mocks/graph_mock.py" --port 0 --port-file "$TMP/graph.port" \
    --exit-with-parent &
mock_pid=$!
port=
for _ in $(seq 1 500); do
    if [ -s "$TMP/graph.port" ]; then port=$(cat "$TMP/graph.port"); break; fi
    kill -0 "$mock_pid" 2>/dev/null || break
    sleep 0.02
done
if [ -z "$port" ]; then
    echo "msgraph_e2e.sh: the Graph mock did not start" >&2
    exit 1
fi
export GRAPH_MOCK_URL="http://127.0.0.1:$port"
export WEIR_ENV_ALLOW="GRAPH_MOCK_URL${WEIR_ENV_ALLOW:+,$WEIR_ENV_ALLOW}"

control() {  # control PATH [JSON]
    "$PY" - "$GRAPH_MOCK_URL/_control/$1" "${2:-}" <<'PY'
import sys, urllib.request
url, body = sys.argv[1], sys.argv[2]
req = urllib.request.Request(url, data=body.encode() if body else None,
                             headers={"Content-Type": "application/json"},
                             method="POST" if body else "GET")
print(urllib.request.urlopen(req, timeout=10).read().decode())
PY
}

# json_check JSON PYTHON_EXPR: the expression, with `r` bound to the
# decoded JSON, is true.
json_check() {
    "$PY" -c 'import json, sys; r = json.loads(sys.argv[1]); sys.exit(0 if eval(sys.argv[2]) else 1)' \
        "$1" "$2" 2>/dev/null
}

# --- the spec, Graph part included ----------------------------------------
run_weir test "$ROOT/tests/lua/msgraph_spec.lua"
expect_rc 0 "msgraph_spec.lua against the Graph mock"
expect_out '^[0-9]+ passed, 0 failed$' "every msgraph test passed"
expect_no_out '^skip msgraph against the Graph mock' "the Graph part ran (not pending)"
expect_no_out '^FAIL' "no failing test"

# --- the example: full then incremental delta sync ------------------------
control reset '{}' >/dev/null
example_args=(run "$ROOT/examples/m365_users.lua"
    --set tenant="$TENANT" --set client_id="$CLIENT_ID" --set client_secret="$SECRET"
    --set graph_url="$GRAPH_MOCK_URL/v1.0"
    --set token_url="$GRAPH_MOCK_URL/{tenant}/oauth2/v2.0/token"
    --set demo_control_url="$GRAPH_MOCK_URL/_control")
run_weir "${example_args[@]}"
expect_rc 0 "m365_users.lua runs"
summary=$(printf '%s\n' "$OUT" | tail -n 1)
if json_check "$summary" 'r["full"]["added"] == 250 and r["full"]["pages"] == 3 and r["full"]["removed"] == 0'; then
    pass; else fail "full round: 250 users added in 3 pages"; fi
if json_check "$summary" 'r["incremental"]["added"] == 3 and r["incremental"]["updated"] == 2 and r["incremental"]["removed"] == 2 and not r["incremental"]["resynced"]'; then
    pass; else fail "incremental round: 3 added, 2 updated, 2 removed"; fi
if json_check "$summary" 'r["users"] == 251 and r["has_delta_link"] and len(r["incremental"]["samples"]) == 3'; then
    pass; else fail "251 users kept, a deltaLink to resume from, 3 sample rows"; fi
expect_out '^incremental sync: 3 added, 2 updated, 2 removed' "printed counts"

# the same through an expired delta state: the second round is a resync
control reset '{}' >/dev/null
control faults '{"path": "/v1.0/users/delta", "sequence": [{"pass": true}, {"pass": true}, {"pass": true}, {"status": 410, "code": "syncStateNotFound", "headers": {"Location": "'"$GRAPH_MOCK_URL"'/v1.0/users/delta"}}]}' >/dev/null
run_weir "${example_args[@]}"
expect_rc 0 "m365_users.lua after a 410"
summary=$(printf '%s\n' "$OUT" | tail -n 1)
if json_check "$summary" 'r["incremental"]["resynced"] and r["incremental"]["removed"] == 2 and r["incremental"]["added"] == 3 and r["users"] == 251'; then
    pass; else fail "410 on the incremental round: full resync, deletions found by reconciliation"; fi

# --- secrets --------------------------------------------------------------
control reset '{}' >/dev/null
write secret.lua <<'LUA'
local graph = require "msgraph"
local log = require "weir.log"
local p = ...
local c = graph.client{ tenant = p.tenant, client_id = p.client_id, client_secret = p.secret,
                        base_url = p.url .. "/v1.0", token_url = p.url .. "/{tenant}/oauth2/v2.0/token" }
log.info("about to fail", { leaked = p.secret })
local body, err = c:get("/users")
if not body then error(err) end
LUA
run_weir run "$TMP/secret.lua" --set tenant="$TENANT" --set client_id="$CLIENT_ID" \
    --set secret=wrong-secret-0123456789 --set url="$GRAPH_MOCK_URL"
expect_rc 1 "a wrong secret fails the run"
expect_err "invalid_client" "the error names the identity error"
expect_err "client_id '$CLIENT_ID' in tenant '$TENANT'" "the error names client and tenant"
expect_err '\[REDACTED\]' "the secret logged by the script is redacted"
if printf '%s' "$ERR$OUT" | grep -q 'wrong-secret-0123456789'; then
    fail "the secret appears in the output"; else pass; fi

# --- the demo script, with this binary -------------------------------------
LAST_CMD="scripts/demo.sh --skip-setup"
WEIR="$WEIR" timeout 120 "$ROOT/scripts/demo.sh" --skip-setup >"$TMP/.out" 2>"$TMP/.err" </dev/null
RC=$?
OUT=$(cat "$TMP/.out")
ERR=$(cat "$TMP/.err")
expect_rc 0 "scripts/demo.sh"
expect_out 'msgraph: retrying .*status=429' "the demo shows the 429 retry"
expect_out 'msgraph: retrying .*status=503' "the demo shows the 503 retry"
expect_out 'msgraph: 401 from Graph, refreshing' "the demo shows the token refresh"
expect_out 'retry after 429: waited' "the mock measured the wait after the 429"
expect_out '"removed": 2' "the demo prints the summary"
expect_out 'tokens issued: 2' "one token, one refresh"

finish
