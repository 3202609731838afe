#!/usr/bin/env bash
# run.sh WEIR -- `weir run`: results as JSON, --set params, errors.
source "$(dirname "$0")/testlib.bash" "$@"

# json_equal JSON_TEXT PYTHON_LITERAL: structural comparison of one line.
json_equal() {
    /usr/bin/python3 -c '
import ast, json, sys
sys.exit(0 if json.loads(sys.argv[1]) == ast.literal_eval(sys.argv[2]) else 1)
' "$1" "$2" 2>/dev/null
}

write table.lua <<'LUA'
return { name = "weir", n = 3, ok = true, list = { 1, 2, 3 }, nested = { x = 1.5 } }
LUA
run_weir run "$TMP/table.lua"
expect_rc 0 "script returning a table"
if json_equal "$OUT" "{'name': 'weir', 'n': 3, 'ok': True, 'list': [1, 2, 3], 'nested': {'x': 1.5}}"; then
    pass
else
    fail "returned table printed as JSON"
fi

write multi.lua <<'LUA'
return 42, "two"
LUA
run_weir run "$TMP/multi.lua"
expect_rc 0 "script returning two values"
if [ "$OUT" = "$(printf '42\n"two"')" ]; then pass; else fail "two results, one JSON value per line"; fi

write nothing.lua <<'LUA'
local x = 1
LUA
run_weir run "$TMP/nothing.lua"
expect_rc 0 "script returning nothing"
expect_no_out '.' "no output when nothing is returned"

write params.lua <<'LUA'
local params = ...
return { name = params.name, expr = params.expr }
LUA
run_weir run "$TMP/params.lua" --set name=weir --set expr=a=b
expect_rc 0 "--set"
if json_equal "$OUT" "{'name': 'weir', 'expr': 'a=b'}"; then pass; else fail "--set k=v arrives in ... (split at the first '=')"; fi

run_weir run "$TMP/params.lua"
expect_rc 0 "params without --set"
if json_equal "$OUT" "{}"; then pass; else fail "params is an empty table without --set"; fi

write fail.lua <<'LUA'
local function inner()
  error("boom from inner")
end
local function outer()
  inner()
end
outer()
LUA
run_weir run "$TMP/fail.lua"
expect_rc 1 "failing script"
expect_err 'fail\.lua:2: boom from inner' "error has file:line: message"
expect_err_ci 'traceback' "error comes with a traceback"
expect_err 'fail\.lua:5' "traceback names the calling line"
expect_no_out '.' "nothing on stdout when the script fails"

write runtime.lua <<'LUA'
local t = nil
return t.field
LUA
run_weir run "$TMP/runtime.lua"
expect_rc 1 "runtime error"
expect_err 'runtime\.lua:2:.*index' "runtime error names file and line"

write syntax.lua <<'LUA'
local x = 1
local y = = 2
LUA
run_weir run "$TMP/syntax.lua"
expect_rc 1 "syntax error"
expect_err 'syntax\.lua:2:' "syntax error names file and line"

run_weir run "$TMP/does_not_exist.lua"
expect_rc_nonzero "missing file"
expect_err 'does_not_exist\.lua' "missing file is named"
expect_err_ci 'no such file|not found|cannot (open|read)' "missing file says why"

write sandbox.lua <<'LUA'
return io == nil, debug == nil, package == nil
LUA
run_weir run "$TMP/sandbox.lua"
expect_rc 0 "sandboxed globals"
if [ "$OUT" = "$(printf 'true\ntrue\ntrue')" ]; then pass; else fail "io, debug and package are absent"; fi

finish
