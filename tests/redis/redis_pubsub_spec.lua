-- weir.redis: pub/sub subscribers (a dedicated connection each).
local redis = require "weir.redis"
local task = require "weir.task"

local URL = os.getenv("WEIR_REDIS_URL")
local P = "spec:pubsub:"

local c

setup(function()
  assert(URL, "WEIR_REDIS_URL is not set: run through tests/harness/redis.sh with")
  c = assert(redis.connect(URL))
end)

local function numsub(channel)
  return c:call("PUBSUB", "NUMSUB", channel)[2]
end

describe("client:subscribe", function()
  it("is subscribed when it returns: a publish right after is delivered", function()
    local sub = assert(c:subscribe(P .. "a"))
    assert.equals(1, c:call("PUBLISH", P .. "a", "hello"))
    assert.same({channel = P .. "a", message = "hello"}, sub:next(5))
    sub:close()
  end)

  it("delivers messages of several channels in publish order, binary-safe", function()
    local sub = assert(c:subscribe(P .. "x", P .. "y"))
    c:call("PUBLISH", P .. "x", "1")
    c:call("PUBLISH", P .. "y", "2\0two")
    c:call("PUBLISH", P .. "x", "3")
    local got = {}
    for i = 1, 3 do
      local m = assert(sub:next(5))
      got[i] = m.channel:sub(#P + 1) .. "=" .. m.message
    end
    assert.same({"x=1", "y=2\0two", "x=3"}, got)
    sub:close()
  end)

  it("wakes a job waiting in next() when another task publishes", function()
    local sub = assert(c:subscribe(P .. "wake"))
    local publisher = task.spawn(function()
      task.sleep(0)
      return c:call("PUBLISH", P .. "wake", "from a task")
    end)
    local m = assert(sub:next())
    assert.equals("from a task", m.message)
    local ok, receivers = publisher:wait()
    assert.is_true(ok)
    assert.equals(1, receivers)
    sub:close()
  end)

  it("returns nil and a timeout error when nothing arrives", function()
    local sub = assert(c:subscribe(P .. "quiet"))
    local m, err = sub:next(0)
    assert.is_nil(m)
    assert.equals("timeout", err.kind)
    local m2, err2 = sub:next(0.01)
    assert.is_nil(m2)
    assert.equals("timeout", err2.kind)
    assert.is_true(err2.retryable)
    sub:close()
  end)

  it("refuses a second job waiting on the same subscriber", function()
    local sub = assert(c:subscribe(P .. "one"))
    local waiter = task.spawn(function() return sub:next() end)
    task.sleep(0)
    assert.has_error(function() sub:next(0.01) end, "another job is already waiting")
    c:call("PUBLISH", P .. "one", "for the waiter")
    local ok, m = waiter:wait()
    assert.is_true(ok)
    assert.equals("for the waiter", m.message)
    sub:close()
  end)

  it("fails a waiting next() when the subscriber is closed by another task", function()
    local sub = assert(c:subscribe(P .. "closing"))
    local waiter = task.spawn(function() return sub:next() end)
    task.sleep(0)
    sub:close()
    local ok, m, err = waiter:wait()
    assert.is_true(ok)
    assert.is_nil(m)
    assert.equals("closed", err.kind)
  end)

  it("unsubscribes on close and on leaving a <close> scope", function()
    local sub = assert(c:subscribe(P .. "gone"))
    assert.equals(1, numsub(P .. "gone"))
    sub:close()
    sub:close()     -- closing twice is fine
    assert.has_error(function() sub:next(0) end, "already closed")
    do
      local scoped <close> = assert(c:subscribe(P .. "scoped"))
      assert.equals(1, numsub(P .. "scoped"))
    end
    -- the server notices the closed connections on its own schedule
    for _ = 1, 2000 do
      if numsub(P .. "gone") == 0 and numsub(P .. "scoped") == 0 then break end
      task.sleep(0.001)
    end
    assert.equals(0, numsub(P .. "gone"))
    assert.equals(0, numsub(P .. "scoped"))
  end)

  it("checks its arguments", function()
    assert.has_error(function() c:subscribe() end, "at least one channel")
    assert.has_error(function() c:subscribe({}) end, "string expected")
    local sub = assert(c:subscribe(P .. "args"))
    assert.has_error(function() sub:next(-1) end, "timeout must be between")
    sub:close()
  end)
end)

describe("client:psubscribe", function()
  it("delivers messages of matching channels with the pattern", function()
    local sub = assert(c:psubscribe(P .. "news.*"))
    assert.equals(1, c:call("PUBLISH", P .. "news.sport", "goal"))
    assert.equals(0, c:call("PUBLISH", P .. "weather", "rain"))
    assert.same({channel = P .. "news.sport", message = "goal", pattern = P .. "news.*"},
                sub:next(5))
    sub:close()
  end)
end)
