-- weir.redis: blocking commands run on dedicated connections, so they
-- never stall the shared one; cancelling a blocked job closes its
-- connection so the command cannot consume data for nobody.
local redis = require "weir.redis"
local task = require "weir.task"

local URL = os.getenv("WEIR_REDIS_URL")
local P = "spec:blocking:"

local c

setup(function()
  assert(URL, "WEIR_REDIS_URL is not set: run through tests/harness/redis.sh with")
  c = assert(redis.connect(URL))
end)

-- Yields until the server reports `n` blocked clients (bounded: the
-- condition is observable, no fixed sleep).
local function wait_blocked(n)
  for _ = 1, 2000 do
    local info = assert(c:call("INFO", "clients"))
    if tonumber(info:match("blocked_clients:(%d+)")) == n then return end
    task.sleep(0.001)
  end
  error("the server never reported " .. n .. " blocked clients")
end

describe("blocking commands", function()
  it("serves BLPOP on a dedicated connection while the shared one keeps working", function()
    c:call("DEL", P .. "q")
    local h = task.spawn(function() return c:call("BLPOP", P .. "q", 0) end)
    wait_blocked(1)
    assert.equals(1, c:stats().blocking_busy)
    c:call("DEL", P .. "other")
    for i = 1, 20 do assert.equals(i, c:call("RPUSH", P .. "other", i)) end
    assert.equals("running", h:status())
    c:call("RPUSH", P .. "q", "item")
    local ok, v = h:wait()
    assert.is_true(ok)
    assert.same({P .. "q", "item"}, v)
    assert.equals(0, c:stats().blocking_busy)
    assert.equals(1, c:stats().blocking_idle)    -- pooled for the next one
  end)

  it("returns nil when a blocking command times out on the server", function()
    local v, err = c:call("BLPOP", P .. "empty", "0.01")
    assert.is_nil(v)
    assert.is_nil(err)
  end)

  it("serves a blocking XREADGROUP while other jobs keep running", function()
    local stream, group = P .. "stream", "workers"
    c:call("DEL", stream)
    assert.equals("OK", c:call("XGROUP", "CREATE", stream, group, "$", "MKSTREAM"))
    local consumer = task.spawn(function()
      return c:xreadgroup{group = group, consumer = "c1", streams = {[stream] = ">"},
                          count = 10, block = 0}
    end)
    wait_blocked(1)
    -- other jobs make progress: a ticker task and shared-connection traffic
    local ticker = task.spawn(function()
      local n = 0
      for _ = 1, 50 do task.sleep(0); n = n + 1 end
      return n
    end)
    local hs = {}
    for i = 1, 50 do hs[i] = task.spawn(function() return c:call("INCR", P .. "ticks") end) end
    for _, r in ipairs(task.all(hs)) do assert.is_true(r.ok) end
    local ok, ticks = ticker:wait()
    assert.is_true(ok)
    assert.equals(50, ticks)
    assert.equals("running", consumer:status())
    -- now feed the stream
    local id = assert(c:call("XADD", stream, "*", "field", "value", "n", 1))
    local ok2, reply = consumer:wait()
    assert.is_true(ok2)
    assert.same({{stream, {{id, {"field", "value", "n", "1"}}}}}, reply)
    -- the entry is pending for c1 until acknowledged
    assert.equals(1, c:call("XACK", stream, group, id))
  end)

  it("builds XREADGROUP from {key, id} pairs and returns nil when BLOCK expires", function()
    local stream = P .. "stream2"
    c:call("DEL", stream)
    c:call("XGROUP", "CREATE", stream, "g", "$", "MKSTREAM")
    assert.is_nil(c:xreadgroup{group = "g", consumer = "c", streams = {{stream, ">"}},
                               block = 10})
    c:call("XADD", stream, "*", "k", "v")
    local r = c:xreadgroup{group = "g", consumer = "c", streams = {{stream}}, noack = true}
    assert.equals(stream, r[1][1])
    assert.equals("v", r[1][2][1][2][2])
    assert.has_error(function() c:xreadgroup{consumer = "c", streams = {}} end, "group")
    assert.has_error(function() c:xreadgroup{group = "g", consumer = "c", streams = {}} end,
                     "streams is empty")
    assert.has_error(function()
      c:xreadgroup{group = "g", consumer = "c", streams = {[stream] = ">"}, count = -1}
    end, "count")
  end)

  it("cancelling a job blocked in BLPOP closes its connection and loses no data", function()
    local q = P .. "cancel"
    c:call("DEL", q)
    local h = task.spawn(function() return c:call("BLPOP", q, 0) end)
    wait_blocked(1)
    h:cancel()
    local ok, err = h:wait()
    assert.is_false(ok)
    expect(err).to_match("cancelled")
    assert.equals(0, c:stats().blocking_busy)
    wait_blocked(0)     -- the server saw the connection go
    c:call("RPUSH", q, "kept")
    assert.same({"kept"}, c:call("LRANGE", q, 0, -1))
  end)

  it("runs many blocking commands at once, each on its own connection", function()
    local hs = {}
    for i = 1, 10 do
      hs[i] = task.spawn(function() return c:call("BLPOP", P .. "many:" .. i, 0) end)
    end
    wait_blocked(10)
    for i = 10, 1, -1 do c:call("RPUSH", P .. "many:" .. i, "v" .. i) end
    for i, r in ipairs(task.all(hs)) do
      assert.is_true(r.ok)
      assert.same({P .. "many:" .. i, "v" .. i}, r.value)
    end
    assert.equals(0, c:stats().blocking_busy)
  end)
end)
