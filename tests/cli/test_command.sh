#!/usr/bin/env bash
# test_command.sh WEIR -- `weir test`: discovery, counts, exit status,
# --filter, isolation between spec files, failures reported with file:line.
source "$(dirname "$0")/testlib.bash" "$@"

write mixed/math_spec.lua <<'LUA'
describe("math", function()
  it("adds", function() expect(1 + 1).to_equal(2) end)
  it("multiplies", function() assert.equals(6, 2 * 3) end)
end)
LUA
write mixed/broken_spec.lua <<'LUA'
describe("broken", function()
  it("passes", function() assert.is_true(true) end)
  it("compares tables", function()
    assert.same({ a = { 1, { b = "x" } } }, { a = { 1, { b = "y" } } })
  end)
end)
LUA
write mixed/nested/dir/deep_spec.lua <<'LUA'
it("is found in a nested directory", function() expect("abc").to_match("^a") end)
LUA
# Not a spec: would fail if it were run.
write mixed/helper.lua <<'LUA'
error("helper.lua must not be run by weir test")
LUA

run_weir test "$TMP/mixed"
expect_rc 1 "a failing spec makes weir test exit 1"
expect_last_line "4 passed, 1 failed" "counts over three spec files"
expect_out '^ok +math > adds$' "one line per passing test"
expect_out '^FAIL +broken > compares tables$' "one line per failing test"
expect_out 'broken_spec\.lua:4:' "failure names file:line"
expect_out '\$\.a\[2\]\.b: expected "x", got "y"' "deep-equality failure shows the table diff"
expect_no_out 'helper\.lua' "files not named *_spec.lua are not run"

run_weir test "$TMP/mixed/math_spec.lua" "$TMP/mixed/nested"
expect_rc 0 "passing files only"
expect_last_line "3 passed, 0 failed" "several paths, files and directories"

run_weir test "$TMP/mixed" --filter "math > mul"
expect_rc 0 "--filter selecting a passing test"
expect_last_line "1 passed, 0 failed" "--filter matches the full 'describe > it' name"
expect_no_out 'adds' "--filter skips the other tests"

write special/names_spec.lua <<'LUA'
it("a.c (literal)", function() end)
it("abc (also matched by the pattern a.c)", function() end)
LUA
run_weir test "$TMP/special" --filter "a.c ("
expect_rc 0 "--filter with pattern characters"
expect_last_line "1 passed, 0 failed" "--filter is a plain substring, not a Lua pattern"
run_weir test "$TMP/mixed" --filter "compares"
expect_rc 1 "--filter selecting a failing test"
expect_last_line "0 passed, 1 failed" "only the filtered failing test ran"

run_weir test "$TMP/mixed" --filter "nothing matches this"
expect_rc_nonzero "no test selected by --filter"

mkdir -p "$TMP/empty"
run_weir test "$TMP/empty"
expect_rc_nonzero "weir test on a directory without specs"

write isolated/a_spec.lua <<'LUA'
it("a sees no global from b", function() assert.is_nil(SHARED_GLOBAL); SHARED_GLOBAL = "a" end)
LUA
write isolated/b_spec.lua <<'LUA'
it("b sees no global from a", function() assert.is_nil(SHARED_GLOBAL); SHARED_GLOBAL = "b" end)
LUA
run_weir test "$TMP/isolated"
expect_rc 0 "each spec file runs in a fresh state"
expect_last_line "2 passed, 0 failed" "isolation between spec files"

write collect/bad_spec.lua <<'LUA'
describe("never runs", function()
  it("x", function() end)
  local t = nil
  t.field = 1
end)
LUA
write collect/good_spec.lua <<'LUA'
it("still runs", function() end)
LUA
run_weir test "$TMP/collect"
expect_rc 1 "an error while collecting fails the file"
expect_last_line "1 passed, 1 failed" "collection error counts as one failed test"
expect_out 'bad_spec\.lua:4:' "collection error names file:line"

write syntax/bad_spec.lua <<'LUA'
it("x", function() end
LUA
run_weir test "$TMP/syntax"
expect_rc_nonzero "a spec with a syntax error fails"
if printf '%s\n%s\n' "$OUT" "$ERR" | grep -q 'bad_spec\.lua:'; then pass; else fail "syntax error in a spec names the file"; fi

write hooks/hooks_spec.lua <<'LUA'
describe("hooks", function()
  local log = {}
  before_each(function() log[#log + 1] = "before" end)
  after_each(function() log[#log + 1] = "after" end)
  it("first", function() assert.same({ "before" }, log) end)
  it("second", function() assert.same({ "before", "after", "before" }, log) end)
  describe("failing hook", function()
    before_each(function() error("hook exploded") end)
    it("is reported as failed", function() end)
  end)
end)
LUA
run_weir test "$TMP/hooks"
expect_rc 1 "a failing before_each fails its test"
expect_last_line "2 passed, 1 failed" "hooks run around each test"
expect_out 'before_each: .*hooks_spec\.lua:8: hook exploded' "hook failure is explained"

finish
