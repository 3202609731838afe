-- What a script sees of the sandbox (the hostile suite in tests/sandbox/
-- attacks it; these specs pin the allowed surface).
describe("sandbox surface", function()
  it("has no io, debug, package, dofile, loadfile, string.dump", function()
    assert.is_nil(io)
    assert.is_nil(debug)
    assert.is_nil(package)
    assert.is_nil(dofile)
    assert.is_nil(loadfile)
    assert.is_nil(string.dump)
  end)

  it("keeps only time functions of os", function()
    assert.is_nil(os.execute)
    assert.is_nil(os.exit)
    assert.is_nil(os.remove)
    assert.is_nil(os.rename)
    assert.is_nil(os.tmpname)
    assert.equals("number", type(os.time()))
    assert.equals("number", type(os.clock()))
    assert.equals("string", type(os.date("!%Y-%m-%d", 0)))
    assert.equals("1970-01-01", os.date("!%Y-%m-%d", 0))
  end)

  it("os.getenv reads only allowed names", function()
    assert.is_nil(os.getenv("HOME"))
    assert.is_nil(os.getenv("PATH"))
  end)

  it("library tables are read-only", function()
    assert.has_error(function() string.upper = nil end, "read-only")
    assert.has_error(function() math.pi = 3 end, "read-only")
    assert.has_error(function() rawset(string, "x", 1) end, "read-only")
    assert.has_error(function() table.insert(math, 1) end, "read-only")
    assert.equals("A", string.upper("a"))
  end)

  it("pairs over a library table lists its functions", function()
    local n = 0
    for k, v in pairs(math) do n = n + 1 end
    assert.is_true(n > 20)
  end)

  it("the string metatable and the environment's metatable are locked", function()
    assert.is_false(getmetatable(""))
    assert.is_false(getmetatable(_ENV))
    assert.has_error(function() setmetatable(_ENV, nil) end, "protected metatable")
  end)

  it("globals stay in this chunk's environment", function()
    some_global = 1
    assert.equals(1, _G.some_global)
    assert.equals(_ENV, _G)
  end)

  it("load accepts text only and shares the caller's environment by default", function()
    shared_value = 41
    assert.equals(42, load("return shared_value + 1")())
    local f, err = load("\27Lua")
    assert.is_nil(f)
    expect(err).to_match("binary")
    assert.has_error(function() load("return 1", "x", "b") end, "binary")
    local env = {y = 2}
    assert.equals(2, load("return y", "c", "t", env)())
  end)

  it("collectgarbage allows only harmless options", function()
    assert.equals("number", type(collectgarbage("count")))
    assert.has_error(function() collectgarbage("stop") end, "not allowed")
    assert.has_error(function() collectgarbage("incremental") end, "not allowed")
  end)

  it("require resolves only module names, never paths", function()
    assert.has_error(function() require "../../etc/passwd" end, "invalid module name")
    assert.has_error(function() require "/etc/passwd" end, "invalid module name")
    assert.has_error(function() require "no.such.module" end, "not found")
    assert.has_error(function() require "io" end, "not found")
  end)

  it("refuses patterns whose backtracking is out of reach, names the function", function()
    local s = ("a"):rep(30000)
    assert.has_error(function() s:find((".-"):rep(8) .. "b") end, "string.find: pattern with 8")
    assert.has_error(function() s:match("(.-)(.-)(.-)b") end, "string.match")
    -- ordinary patterns on large inputs are fine
    assert.equals(30000, #s:match("(a+)"))
    assert.equals(1, select(2, ("k=v"):gsub("(%w+)=(%w+)", "%2=%1")))
    assert.equals(30000, select(2, s:gsub("a", "b")))
  end)

  it("os.date refuses format bombs", function()
    assert.has_error(function() os.date(("%c"):rep(1000)) end, "os.date")
  end)
end)

describe("sandbox limits added after the hostile suite", function()
  it("log.level only reads the engine-wide level", function()
    local log = require "weir.log"
    assert.equals("string", type(log.level()))
    assert.has_error(function() log.level("debug") end)
  end)

  it("setmetatable refuses __gc", function()
    assert.has_error(function() setmetatable({}, {__gc = function() end}) end, "__gc")
  end)

  it("rawset still works on the script's own tables, locked or not", function()
    local t = setmetatable({}, {__metatable = "mine"})
    rawset(t, "a", 1)
    assert.equals(1, rawget(t, "a"))
    local u = {}
    rawset(u, "b", 2)
    assert.equals(2, u.b)
  end)

  it("built-in module tables are read-only", function()
    local json = require "weir.json"
    assert.has_error(function() json.encode = nil end, "read-only")
    assert.equals("[1]", json.encode({1}))
  end)
end)
