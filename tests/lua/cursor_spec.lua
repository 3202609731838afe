-- weir.cursor: staged in the job, committed on success.
local cursor = require "weir.cursor"
local task = require "weir.task"

local n = 0
local function src() n = n + 1; return "src" .. n .. "_" .. os.time() end

describe("cursor", function()
  it("get returns nil for an unknown source", function()
    assert.is_nil(cursor.get(src()))
  end)

  it("set is visible to the same job before commit, not to others", function()
    local s = src()
    cursor.set(s, {delta = "https://graph/delta?token=abc", n = 3})
    assert.equals(3, cursor.get(s).n)
    local ok, other = task.wait(task.spawn(function() return cursor.get(s) end))
    assert.is_true(ok)
    assert.is_nil(other)
    assert.equals(1, cursor.commit())
    local ok2, seen = task.wait(task.spawn(function() return cursor.get(s) end))
    assert.is_true(ok2)
    assert.equals("https://graph/delta?token=abc", seen.delta)
  end)

  it("a failed task's staged cursor is never committed", function()
    local s = src()
    local ok = task.wait(task.spawn(function() cursor.set(s, 99); error("boom") end))
    assert.is_false(ok)
    assert.is_nil(cursor.get(s))
  end)

  it("list shows committed values and reset removes them", function()
    local s = src()
    cursor.set(s, "2024-01-01T00:00:00Z")
    cursor.commit()
    assert.equals("2024-01-01T00:00:00Z", cursor.list()[s])
    assert.is_true(cursor.reset(s))
    assert.is_nil(cursor.get(s))
    assert.is_false(cursor.reset(s))
  end)

  it("commit with nothing staged does nothing", function()
    assert.equals(0, cursor.commit())
  end)

  it("refuses values JSON cannot hold and nil", function()
    assert.has_error(function() cursor.set(src(), function() end) end, "json.encode")
    assert.has_error(function() cursor.set(src(), nil) end, "cursor.reset")
    assert.has_error(function() cursor.set("", 1) end, "source name")
  end)
end)
