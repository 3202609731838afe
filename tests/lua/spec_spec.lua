-- spec_spec.lua -- weir.spec tested on itself.  Expected failures are
-- checked through nested runs: a spec source is loaded as its own chunk
-- and run by spec.run_file with the output captured, so the outer run
-- only sees whether the nested results were the right ones.

local spec = require "weir.spec"

local function run_nested(source, opts)
  local lines = {}
  local env = setmetatable({}, { __index = _ENV })
  local chunk = assert(load(source, "@nested_spec.lua", "t", env))
  local o = { output = function(line) lines[#lines + 1] = line end }
  for k, v in pairs(opts or {}) do o[k] = v end
  local passed, failed, pending = spec.run_file(chunk, env, "nested_spec.lua", o)
  return { passed = passed, failed = failed, pending = pending, lines = lines,
           text = table.concat(lines, "\n") }
end

-- The message a function raises (without its position), or nil.
local function failure_of(fn)
  local ok, err = pcall(fn)
  if ok then return nil end
  return (tostring(err):gsub("^[^:\n]*:%d+: ", ""))
end

describe("expect matchers", function()
  it("pass when they hold", function()
    expect(2).to_equal(2)
    expect("a").to_be("a")
    expect({ a = { 1, 2 } }).to_same({ a = { 1, 2 } })
    expect(0).to_be_truthy()
    expect(false).to_be_falsy()
    expect(nil).to_be_nil()
    expect("hello world").to_match("^hel+o")
    expect("a.b").to_contain(".")
    expect({ 1, { id = 2 } }).to_contain({ id = 2 })
    expect(function() error("bad thing") end).to_fail("bad")
    expect(function() error({ code = 1 }) end).to_fail()
  end)

  it("negate with never and not_", function()
    expect(1).never.to_equal(2)
    expect(1).not_.to_be_nil()
    expect("abc").never.to_match("^b")
    expect({ 1, 2 }).never.to_contain(3)
    expect(function() end).never.to_fail()
    expect({ 1 }).never.to_same({ 2 })
  end)

  it("explain what failed", function()
    assert.equals("expected 3, got 2", failure_of(function() expect(2).to_equal(3) end))
    assert.equals('expected a value other than "x"',
      failure_of(function() expect("x").never.to_equal("x") end))
    assert.equals("expected nil, got 0", failure_of(function() expect(0).to_be_nil() end))
    assert.equals("expected a truthy value, got false",
      failure_of(function() expect(false).to_be_truthy() end))
    assert.equals('expected "abc" to match "^b"',
      failure_of(function() expect("abc").to_match("^b") end))
    assert.equals("expected {1, 2} to contain 3",
      failure_of(function() expect({ 1, 2 }).to_contain(3) end))
    assert.equals("expected the function to fail, but it returned normally",
      failure_of(function() expect(function() end).to_fail() end))
  end)

  it("point a to_equal on equal tables at to_same", function()
    expect(failure_of(function() expect({ 1 }).to_equal({ 1 }) end))
      .to_contain("use to_same")
  end)

  it("report the spec line, not the library's", function()
    local ok, err = pcall(function()
      expect(1).to_equal(2)   -- the line below the pcall: a fixed offset
    end)
    expect(ok).to_be(false)
    expect(err).to_match("spec_spec%.lua:%d+: expected 2, got 1$")
  end)

  it("compare floats exactly and show the difference", function()
    expect(failure_of(function() expect(0.1 + 0.2).to_equal(0.3) end))
      .to_equal("expected 0.3, got 0.30000000000000004")
  end)

  it("reject misuse even when negated", function()
    expect(failure_of(function() expect(42).never.to_match("x") end))
      .to_contain("to_match: expected a string")
    expect(failure_of(function() expect(1).never.to_fail() end))
      .to_contain("expected a function")
    expect(failure_of(function() expect(1).to_bogus() end))
      .to_equal("expect: unknown matcher 'to_bogus'")
  end)

  it("check the error text of to_fail", function()
    expect(failure_of(function()
      expect(function() error("actual problem") end).to_fail("other problem")
    end)).to_match('expected an error containing "other problem", got ".-actual problem"')
  end)
end)

describe("assert", function()
  it("is callable like the standard assert", function()
    local a, b, c = assert(1, "msg", 3)
    assert.same({ 1, "msg", 3 }, { a, b, c })
    assert.equals("plain", failure_of(function() assert(false, "plain") end))
    assert.equals("assertion failed!", failure_of(function() assert(nil) end))
    local ok, err = pcall(assert, false, { code = 7 })
    assert.is_false(ok)
    assert.same({ code = 7 }, err)
  end)

  it("has busted-style checks", function()
    assert.equals(1, 1)
    assert.same({ x = { 1 } }, { x = { 1 } })
    assert.is_true(true)
    assert.is_false(false)
    assert.is_nil(nil)
    assert.is_not_nil(false)
    assert.truthy("")
    assert.falsy(nil)
    assert.has_error(function() error("kaput") end, "kaput")
    assert.matches("^%d+$", "123")
    assert.near(1.0, 1.05, 0.1)
  end)

  it("takes expected first and explains failures", function()
    assert.equals("expected 1, got 2", failure_of(function() assert.equals(1, 2) end))
    assert.equals("context: expected 1, got 2",
      failure_of(function() assert.equals(1, 2, "context") end))
    assert.equals("expected true, got 1", failure_of(function() assert.is_true(1) end))
    assert.equals("expected false, got nil", failure_of(function() assert.is_false(nil) end))
    assert.equals("expected a non-nil value", failure_of(function() assert.is_not_nil(nil) end))
    assert.equals("expected 1.5 to be within 0.1 of 1",
      failure_of(function() assert.near(1, 1.5, 0.1) end))
    assert.equals("expected the function to fail, but it returned normally",
      failure_of(function() assert.has_error(function() end) end))
    assert.equals('expected "abc" to match "^%d"',
      failure_of(function() assert.matches("^%d", "abc") end))
  end)
end)

describe("deep equality", function()
  it("lists every differing path", function()
    local d = spec.diff({ a = { 1, { b = "x" } }, gone = 1, same = true },
                        { a = { 1, { b = "y" } }, extra = { 1 }, same = true })
    assert.same({
      '$.a[2].b: expected "x", got "y"',
      "$.extra: unexpected key (got {1})",
      "$.gone: missing (expected 1)",
    }, { d[1], d[2], d[3] })
    assert.equals(3, d.count)
  end)

  it("names keys that are not identifiers", function()
    local d = spec.diff({ ["two words"] = 1, [true] = 1 }, { ["two words"] = 2, [true] = 1 })
    assert.same({ '$["two words"]: expected 1, got 2' }, { d[1] })
  end)

  it("reports a type change at its path", function()
    local d = spec.diff({ a = { 1 } }, { a = "1" })
    assert.equals('$.a: expected {1}, got "1"', d[1])
  end)

  it("ignores metatables and survives cycles", function()
    local a, b = { n = 1 }, setmetatable({ n = 1 }, { __eq = function() return false end })
    a.self, b.self = a, b
    assert.is_true(spec.deep_equal(a, b))
    b.n = 2
    assert.equals("$.n: expected 1, got 2", spec.diff(a, b)[1])
  end)

  it("treats NaN as equal to NaN", function()
    assert.same({ 0 / 0 }, { 0 / 0 })
  end)

  it("caps the number of lines", function()
    local e, a = {}, {}
    for i = 1, 50 do e[i] = i; a[i] = -i end
    local d = spec.diff(e, a)
    assert.equals(50, d.count)
    expect(#d < 50).to_be(true)
    expect(failure_of(function() assert.same(e, a) end)).to_match("%.%.%.%(%d+ more%)")
  end)

  it("compares decoded JSON arrays with plain tables", function()
    local ok, json = pcall(require, "weir.json")
    if not ok then return end   -- plain Lua without the engine
    assert.same({ 1, { x = "y" } }, json.decode('[1, {"x": "y"}]'))
    assert.same({ a = json.null }, json.decode('{"a": null}'))
  end)
end)

describe("repr", function()
  it("quotes and escapes strings", function()
    assert.equals('"a\\n\\"b\\"\\001"', spec.repr('a\n"b"\1'))
  end)

  it("truncates long strings", function()
    local r = spec.repr(string.rep("x", 1000))
    expect(#r < 200).to_be(true)
    expect(r).to_contain("(1000 bytes)")
  end)

  it("prints tables in a stable order with a depth limit", function()
    assert.equals('{1, 2, a = true, b = "x", ["c d"] = 3}',
      spec.repr({ 1, 2, b = "x", a = true, ["c d"] = 3 }))
    assert.equals("{{{{{...}}}}}", spec.repr({ { { { { { 1 } } } } } }))
  end)

  it("marks cycles instead of recursing", function()
    local t = {}
    t.self = t
    assert.equals("{self = <cycle>}", spec.repr(t))
  end)

  it("does not call __tostring or __index of tables", function()
    local t = setmetatable({ 1 }, { __tostring = function() error("called") end,
                                    __index = function() error("called") end })
    assert.equals("{1}", spec.repr(t))
  end)

  it("caps the entries shown", function()
    local t = {}
    for i = 1, 100 do t[i] = i end
    expect(spec.repr(t)).to_contain("...(80 more)")
  end)
end)

describe("run_file", function()
  it("prints one line per test and counts", function()
    local r = run_nested([[
describe("math", function()
  it("adds", function() expect(1 + 1).to_equal(2) end)
  it("is wrong", function()
    expect(1 + 1).to_equal(3)
  end)
  pending("later")
  it("also later")
end)
it("top level", function() end)
]])
    assert.same({ 2, 1, 2 }, { r.passed, r.failed, r.pending })
    assert.same({
      "ok   math > adds",
      "FAIL math > is wrong",
      "     nested_spec.lua:4: expected 3, got 2",
      "skip math > later",
      "skip math > also later",
      "ok   top level",
    }, r.lines)
  end)

  it("shows the table diff of a deep-equality failure", function()
    local r = run_nested([[
it("compares", function()
  assert.same({ a = { 1, { b = "x" } } }, { a = { 1, { b = "y" } }, c = 1 })
end)
]])
    assert.equals(1, r.failed)
    assert.same({
      "FAIL compares",
      "     nested_spec.lua:2: tables differ (2 differences):",
      '       $.a[2].b: expected "x", got "y"',
      "       $.c: unexpected key (got 1)",
    }, r.lines)
  end)

  it("locates errors raised without a position", function()
    local r = run_nested([[
local function helper()
  error({ code = 42 })
end
it("raises a table", function()
  helper()
end)
]])
    assert.equals(1, r.failed)
    assert.same({ "FAIL raises a table", "     {code = 42}", "     at nested_spec.lua:2" }, r.lines)
  end)

  it("prints a traceback of positions when verbose", function()
    local r = run_nested([[
local function helper()
  error("deep")
end
it("fails deep", function()
  helper()
end)
]], { verbose = true })
    expect(r.text).to_contain("     traceback:\n       nested_spec.lua:2\n       nested_spec.lua:5")
    expect(r.lines[#r.lines]).to_equal("# nested_spec.lua: 0 passed, 1 failed, 0 pending")
  end)

  it("filters on the full name as a plain substring", function()
    local source = [[
describe("a.b", function()
  it("one", function() end)
  it("two", function() error("not selected") end)
end)
describe("axb", function() it("one", function() error("not selected") end) end)
]]
    local r = run_nested(source, { filter = "a.b > one" })
    assert.same({ "ok   a.b > one" }, r.lines)
    r = run_nested(source, { filter = "nothing" })
    assert.same({ 0, 0 }, { r.passed, r.failed })
    assert.same({}, r.lines)
  end)

  it("runs hooks in order around each test", function()
    local r = run_nested([[
log = {}
local function note(s) return function() log[#log + 1] = s end end
before_each(note("root-before"))
after_each(note("root-after"))
describe("outer", function()
  setup(note("setup"))
  teardown(note("teardown"))
  before_each(note("outer-before"))
  after_each(note("outer-after"))
  it("one", note("one"))
  describe("inner", function()
    before_each(note("inner-before"))
    it("two", note("two"))
  end)
end)
it("last", function()
  assert.same({ "setup",
    "root-before", "outer-before", "one", "outer-after", "root-after",
    "root-before", "outer-before", "inner-before", "two", "outer-after", "root-after",
    "teardown", "root-before" }, log)
end)
]])
    assert.same({ 3, 0 }, { r.passed, r.failed }, r.text)
  end)

  it("counts failing hooks as failed tests", function()
    local r = run_nested([[
describe("before", function()
  before_each(function() error("before broke") end)
  after_each(function() AFTER_RAN = true end)
  it("x", function() BODY_RAN = true end)
end)
describe("after", function()
  after_each(function() error("after broke") end)
  it("y", function() end)
end)
it("z", function() assert.is_nil(BODY_RAN); assert.is_nil(AFTER_RAN) end)
]])
    assert.same({ 1, 2 }, { r.passed, r.failed }, r.text)
    expect(r.text).to_contain("FAIL before > x\n     before_each: nested_spec.lua:2: before broke")
    expect(r.text).to_contain("FAIL after > y\n     after_each: nested_spec.lua:7: after broke")
  end)

  it("fails every test of a block whose setup failed, and a failing teardown", function()
    local r = run_nested([[
describe("s", function()
  setup(function() error("no database") end)
  it("a", function() end)
  it("b", function() end)
end)
describe("t", function()
  teardown(function() error("cleanup broke") end)
  it("c", function() end)
end)
]])
    assert.same({ 1, 3 }, { r.passed, r.failed }, r.text)
    expect(r.text).to_contain("FAIL s > a\n     setup failed: nested_spec.lua:2: no database")
    expect(r.text).to_contain("FAIL s > b\n")
    expect(r.text).to_contain("FAIL t > teardown\n     nested_spec.lua:7: cleanup broke")
  end)

  it("reports an error while collecting as one failure named after the file", function()
    local r = run_nested([[
it("never runs", function() end)
local t = nil
t.x = 1
]])
    assert.same({ 0, 1 }, { r.passed, r.failed })
    assert.same({ "FAIL nested_spec.lua",
                  "     nested_spec.lua:3: attempt to index a nil value (local 't')" }, r.lines)
  end)

  it("refuses to declare tests while tests run", function()
    local r = run_nested([[
it("declares", function() it("inner", function() end) end)
]])
    assert.equals(1, r.failed)
    expect(r.text).to_contain("it() cannot be called while tests run")
  end)

  it("lets test bodies yield", function()
    local ok, task = pcall(require, "weir.task")
    if not ok then return end   -- plain Lua without the engine
    local r = run_nested([[
local task = require "weir.task"
it("sleeps", function()
  task.sleep(0)
  task.sleep(0)
end)
it("yields inside to_fail", function()
  expect(function() task.sleep(0); error("after the yield") end).to_fail("after the yield")
end)
]])
    assert.same({ 2, 0 }, { r.passed, r.failed }, r.text)
  end)
end)
