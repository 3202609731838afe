#!/usr/bin/env bash
# valgrind.sh WEIR -- representative runs under valgrind memcheck: json,
# crypto, task.spawn/sleep/wait, an HTTP request to the mock (when
# WEIR_MOCK_URL is set), a failing script and a `weir test` run.  Any
# memcheck error or definite/indirect leak fails the test.
#
# Skipped (exit 0) when the binary is built with AddressSanitizer: ASan's
# shadow memory and valgrind do not work together.
source "$(dirname "$0")/testlib.bash" "$@"

if ldd "$WEIR" 2>/dev/null | grep -q 'libasan' ||
   nm "$WEIR" 2>/dev/null | grep -q '__asan_init'; then
    echo "valgrind.sh: SKIP: $WEIR is built with AddressSanitizer (cannot run under valgrind)"
    exit 0
fi
if ! command -v valgrind >/dev/null; then
    echo "valgrind.sh: valgrind is not installed (Debian package: valgrind)" >&2
    exit 1
fi

# run_vg EXPECTED_RC NAME ARGS...: weir ARGS under memcheck; 99 = an error.
run_vg() {
    local expected=$1 name=$2
    shift 2
    local log="$TMP/vg-$name.log"
    LAST_CMD="valgrind weir $*"
    timeout 250 valgrind --quiet --leak-check=full \
        --errors-for-leak-kinds=definite,indirect --error-exitcode=99 \
        --track-origins=yes --log-file="$log" \
        "$WEIR" "$@" >"$TMP/.out" 2>"$TMP/.err" </dev/null
    RC=$?
    OUT=$(cat "$TMP/.out")
    ERR=$(cat "$TMP/.err")
    if [ "$RC" -eq 99 ]; then
        fail "$name: memcheck reported errors"
        sed 's/^/  | /' "$log" >&2
    elif [ "$RC" -ne "$expected" ]; then
        fail "$name: exit $RC, expected $expected"
        sed 's/^/  | /' "$log" >&2
    else
        pass
    fi
}

write mixed.lua <<'LUA'
local params = ...
local json = require "weir.json"
local crypto = require "weir.crypto"
local task = require "weir.task"

local doc = json.decode('{"a": [1, 2.5, {"b": null}], "s": "caf\\u00e9", "e": []}')
local text = json.encode(doc)
assert(json.decode(text).a[3].b == json.null)
local digest = crypto.sha256_hex(text)
local mac = crypto.hmac_sha256_hex("secret key", text)
assert(crypto.base64_decode(crypto.base64_encode(text)) == text)
local id = crypto.uuid4()

-- Spawned tasks that sleep, then are waited for; one of them fails.
local tasks = {}
for i = 1, 4 do
  tasks[i] = task.spawn(function()
    task.sleep(0.001 * i)
    if i == 4 then error("task four fails on purpose") end
    return i * 10
  end)
end
local results = {}
for i = 1, 3 do
  local ok, value = task.wait(tasks[i])
  assert(ok, value)
  results[i] = value
end
local ok_last, err_last = task.wait(tasks[4])
assert(tostring(err_last):find("task four fails on purpose", 1, true))

local status
if params.url then
  local http = require "weir.http"
  local res = http.request { url = params.url .. "/json" }
  status = res.status
  assert(json.decode(res.body).name == "weir")
end

-- Garbage: tables and strings freed by the collector.
for i = 1, 2000 do local _ = json.encode({ i = i, s = string.rep("x", i % 50) }) end

return { digest = digest, mac = mac, id_len = #id, results = results,
         last_failed = not ok_last, status = status }
LUA

write failing.lua <<'LUA'
local json = require "weir.json"
local doc = json.decode('{"nested": {"deep": [1, 2, 3]}}')
local function explode() error("failing on purpose: " .. #doc.nested.deep) end
explode()
LUA

write specs/sample_spec.lua <<'LUA'
local json = require "weir.json"
describe("under valgrind", function()
  it("passes", function() assert.same({ 1, 2 }, json.decode("[1, 2]")) end)
  it("fails with a table diff", function() assert.same({ a = 1 }, { a = 2 }) end)
end)
LUA

if [ -n "${WEIR_MOCK_URL:-}" ]; then
    run_vg 0 mixed run "$TMP/mixed.lua" --set "url=$WEIR_MOCK_URL"
    expect_out '"status": *200' "the HTTP request was made"
else
    echo "valgrind.sh: WEIR_MOCK_URL is unset: running without the HTTP request"
    run_vg 0 mixed run "$TMP/mixed.lua"
fi
expect_out '"results": *\[10, *20, *30\]' "tasks returned their values"
expect_out '"last_failed": *true' "the failing task failed"

run_vg 1 failing run "$TMP/failing.lua"
expect_err 'failing\.lua:3: failing on purpose: 3' "the failing script reports its error"

run_vg 1 spec test "$TMP/specs"
expect_last_line "1 passed, 1 failed" "weir test under valgrind"

finish
