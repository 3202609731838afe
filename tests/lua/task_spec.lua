-- weir.task: sleep, spawn / wait / all, now, cancel.
local task = require "weir.task"

describe("task.sleep", function()
  it("yields and resumes after at least the given time on the engine clock", function()
    local t0 = task.now()
    task.sleep(0.02)
    assert.is_true(task.now() - t0 >= 0.02)
  end)

  it("lets other tasks run while sleeping", function()
    local order = {}
    local h = task.spawn(function() order[#order + 1] = "child" end)
    task.sleep(0)
    order[#order + 1] = "parent"
    task.wait(h)
    assert.same({"child", "parent"}, order)
  end)

  it("rejects negative and non-numeric durations with the function's name", function()
    assert.has_error(function() task.sleep(-1) end, "task.sleep")
    assert.has_error(function() task.sleep("soon") end, "number expected")
  end)
end)

describe("task.spawn / task.wait", function()
  it("returns true and every result of the task", function()
    local h = task.spawn(function(a, b) task.sleep(0.001); return a + b, "sum", nil end, 2, 3)
    local ok, v, s = task.wait(h)
    assert.is_true(ok)
    assert.equals(5, v)
    assert.equals("sum", s)
  end)

  it("returns false and the error value when the task fails", function()
    local h = task.spawn(function() error({kind = "permanent", message = "nope"}) end)
    local ok, err = task.wait(h)
    assert.is_false(ok)
    assert.equals("permanent", err.kind)
    assert.equals("nope", err.message)
  end)

  it("keeps the file:line of a string error", function()
    local ok, err = task.wait(task.spawn(function() error("bad thing") end))
    assert.is_false(ok)
    expect(err).to_match("task_spec%.lua:%d+: bad thing")
  end)

  it("returns nil and a timeout error when the task outlives the timeout", function()
    local h = task.spawn(function() task.sleep(5) end)
    local ok, err = task.wait(h, 0.01)
    assert.is_nil(ok)
    assert.equals("timeout", err.kind)
    assert.is_true(err.retryable)
    expect(h:status()).to_equal("running")
    h:cancel()
    local ok2, err2 = h:wait()
    assert.is_false(ok2)
    expect(err2).to_match("cancelled")
  end)

  it("lets many waiters wait on one task", function()
    local target = task.spawn(function() task.sleep(0.005); return "v" end)
    local waiters = {}
    for i = 1, 5 do
      waiters[i] = task.spawn(function() local ok, v = task.wait(target); return ok and v end)
    end
    for i = 1, 5 do
      local ok, v = task.wait(waiters[i])
      assert.is_true(ok)
      assert.equals("v", v)
    end
  end)

  it("waiting on a finished task does not yield", function()
    local h = task.spawn(function() return 1 end)
    task.sleep(0.001)
    expect(h:status()).to_equal("done")
    local ok, v = task.wait(h)
    assert.is_true(ok)
    assert.equals(1, v)
  end)

  it("runs a thousand tasks concurrently", function()
    local hs = {}
    for i = 1, 1000 do hs[i] = task.spawn(function() task.sleep(0.01); return i end) end
    local results = task.all(hs)
    assert.equals(1000, #results)
    local sum = 0
    for i = 1, 1000 do
      assert.is_true(results[i].ok)
      sum = sum + results[i].value
    end
    assert.equals(500500, sum)
  end)
end)

describe("task.all", function()
  it("collects results and errors in order", function()
    local r = task.all{
      task.spawn(function() return 1, 2 end),
      task.spawn(function() error("x") end),
    }
    assert.is_true(r[1].ok)
    assert.same({1, 2}, r[1].values)
    assert.is_false(r[2].ok)
    expect(r[2].error).to_match("x")
  end)

  it("times out as a whole", function()
    local slow = task.spawn(function() task.sleep(5) end)
    local r = task.all({task.spawn(function() return 1 end), slow}, 0.01)
    assert.is_true(r[1].ok)
    assert.is_false(r[2].ok)
    assert.equals("timeout", r[2].error.kind)
    slow:cancel()
  end)

  it("rejects a non-table", function()
    assert.has_error(function() task.all(42) end, "task.all")
  end)
end)

describe("task.now", function()
  it("is monotonic", function()
    local a = task.now()
    local b = task.now()
    assert.is_true(b >= a)
    assert.equals("number", type(a))
  end)
end)

describe("task ownership", function()
  it("tasks spawned by a failing task die with it", function()
    local child
    local parent = task.spawn(function()
      child = task.spawn(function() task.sleep(30) end)
      task.sleep(0.001)
      error("parent fails")
    end)
    local ok = task.wait(parent)
    assert.is_false(ok)
    local cok = task.wait(child, 5)
    assert.is_false(cok)
    assert.equals("failed", child:status())
  end)
end)
