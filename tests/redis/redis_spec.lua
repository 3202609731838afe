-- weir.redis: connect, reply mapping, arguments, errors, pipelines,
-- transactions, eval, concurrency.  Needs a server: run through
-- tests/harness/redis.sh with (tests/cli/redis.sh does).
local redis = require "weir.redis"
local task = require "weir.task"

local URL = os.getenv("WEIR_REDIS_URL")
local SOCKET = os.getenv("WEIR_REDIS_SOCKET")
local P = "spec:core:"      -- key prefix of this file

local c

setup(function()
  assert(URL, "WEIR_REDIS_URL is not set: run through tests/harness/redis.sh with")
  c = assert(redis.connect(URL))
end)

-- INFO-style "field:value" lookup.
local function info_field(section, field)
  local text = assert(c:call("INFO", section))
  return text:match(field .. ":([^\r\n]*)")
end

describe("redis.connect", function()
  it("returns a client that answers and shares one connection per URL", function()
    local before = c:stats().connects
    local again = assert(redis.connect(URL))
    assert.equals("PONG", again:call("PING"))
    assert.equals(before, again:stats().connects)
    expect(again:name()).to_match("^127%.0%.0%.1:%d+$")
    expect(tostring(again)).to_match("redis client")
  end)

  it("connects over a unix socket", function()
    assert(SOCKET, "WEIR_REDIS_SOCKET is not set")
    local u = assert(redis.connect(SOCKET))
    assert.equals("OK", u:call("SET", P .. "unix", "via socket"))
    assert.equals("via socket", c:call("GET", P .. "unix"))
    expect(u:name()).to_match("^unix:/")
  end)

  it("selects the database named in the URL", function()
    local db3 = assert(redis.connect(URL .. "/3"))
    db3:call("SET", P .. "db", "three")
    assert.equals("three", db3:call("GET", P .. "db"))
    assert.is_nil(c:call("GET", P .. "db"))
    expect(db3:name()).to_match("/3$")
  end)

  it("authenticates with user and password from the URL, and hides the password", function()
    assert.equals("OK", c:call("ACL", "SETUSER", "weirspec", "on", ">s3cret", "~*", "+@all"))
    local authed = assert(redis.connect((URL:gsub("^redis://", "redis://weirspec:s3cret@"))))
    assert.equals("weirspec", authed:call("ACL", "WHOAMI"))
    local bad, err = redis.connect((URL:gsub("^redis://", "redis://weirspec:wrong@")))
    assert.is_nil(bad)
    assert.equals("connection", err.kind)
    assert.is_false(err.retryable)
    expect(err.message).to_match("AUTH failed")
    assert.is_nil(err.message:find("wrong", 1, true))
    -- during the backoff that follows, the fast failure is still not retryable
    local bad2, err2 = redis.connect((URL:gsub("^redis://", "redis://weirspec:wrong@")))
    assert.is_nil(bad2)
    expect(err2.message).to_match("AUTH failed.*next attempt in")
    assert.is_false(err2.retryable)
  end)

  it("fails with a retryable connection error when nothing listens, then backs off", function()
    local cl, err = redis.connect("redis://127.0.0.1:1")
    assert.is_nil(cl)
    assert.equals("connection", err.kind)
    assert.is_true(err.retryable)
    expect(err.message).to_match("127%.0%.0%.1:1")
    -- a second attempt right away fails fast without touching the network
    local cl2, err2 = redis.connect("redis://127.0.0.1:1")
    assert.is_nil(cl2)
    expect(err2.message).to_match("next attempt in %d+ ms")
  end)

  it("raises on a malformed URL, an unsupported scheme and bad options", function()
    assert.has_error(function() redis.connect("http://localhost") end, "unsupported redis URL")
    assert.has_error(function() redis.connect("rediss://localhost") end, "TLS")
    assert.has_error(function() redis.connect("redis://host:99999") end, "bad redis URL")
    assert.has_error(function() redis.connect("redis://host/notadb") end, "bad redis URL")
    assert.has_error(function() redis.connect("unix://relative.sock") end, "bad redis URL")
    assert.has_error(function() redis.connect(URL, {connect_timeout = -1}) end, "connect_timeout")
    assert.has_error(function() redis.connect(URL, {command_timeout = "soon"}) end,
                     "command_timeout")
  end)
end)

describe("client:call reply mapping", function()
  it("maps status replies to strings", function()
    assert.equals("OK", c:call("SET", P .. "s", "x"))
    assert.equals("PONG", c:call("PING"))
  end)

  it("maps integers to Lua integers, negative and 64-bit too", function()
    c:call("DEL", P .. "i")
    assert.equals(1, c:call("INCR", P .. "i"))
    assert.equals(-9, c:call("DECRBY", P .. "i", 10))
    assert.equals(math.tointeger(2 ^ 62) - 9, c:call("INCRBY", P .. "i", math.tointeger(2 ^ 62)))
    assert.is_true(math.type(c:call("EXISTS", P .. "i")) == "integer")
  end)

  it("maps bulk strings to strings and a missing key to a single nil", function()
    c:call("SET", P .. "b", "bulk")
    assert.equals("bulk", c:call("GET", P .. "b"))
    local n = select("#", c:call("GET", P .. "missing"))
    assert.equals(1, n)
    assert.is_nil(c:call("GET", P .. "missing"))
  end)

  it("maps arrays to tables, nil elements to false, nested arrays to nested tables", function()
    c:call("SET", P .. "a1", "one")
    c:call("DEL", P .. "a2")
    assert.same({"one", false}, c:call("MGET", P .. "a1", P .. "a2"))
    assert.same({}, c:call("LRANGE", P .. "nolist", 0, -1))
    assert.same({1, {"two", {3}}, false},
                c:eval("return {1, {'two', {3}}, false}"))
  end)

  it("returns nil and a redis error table for error replies", function()
    c:call("SET", P .. "str", "x")
    local v, err = c:call("LPUSH", P .. "str", "y")
    assert.is_nil(v)
    assert.equals("redis", err.kind)
    assert.equals("WRONGTYPE", err.code)
    expect(err.message).to_match("^WRONGTYPE ")
    assert.is_false(err.retryable)
    local v2, err2 = c:call("NOSUCHCOMMAND")
    assert.is_nil(v2)
    assert.equals("ERR", err2.code)
  end)

  it("puts error replies inside arrays as error tables", function()
    local r = c:pipeline(function(p)
      p:call("SET", P .. "tx", "1")
      p:call("LPUSH", P .. "tx", "x")
    end, {transaction = true})
    assert.equals("OK", r[1])
    assert.equals("redis", r[2].kind)
    assert.equals("WRONGTYPE", r[2].code)
  end)

  it("is binary-safe for keys and values (zero bytes, every byte value)", function()
    local bytes = {}
    for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end
    local all = table.concat(bytes)
    local key = P .. "bin\0key"
    c:call("SET", key, all .. "\0" .. all)
    local got = c:call("GET", key)
    assert.equals(513, #got)
    assert.is_true(got == all .. "\0" .. all)
    assert.is_nil(c:call("GET", P .. "bin"))   -- the key was not cut at \0
    local big = string.rep("z\0", 512 * 1024)
    c:call("SET", P .. "big", big)
    assert.is_true(c:call("GET", P .. "big") == big)
  end)

  it("sends integers as integers and floats with full precision", function()
    c:call("SET", P .. "f", 0.1)
    assert.equals(0.1, tonumber(c:call("GET", P .. "f")))
    c:call("SET", P .. "n", 42)
    assert.equals("42", c:call("GET", P .. "n"))
    assert.equals(43, c:call("INCR", P .. "n"))
  end)

  it("client:command takes the command as one array", function()
    assert.equals("OK", c:command{"SET", P .. "cmd", "v"})
    assert.equals("v", c:command{"GET", P .. "cmd"})
  end)

  it("raises for arguments that are not strings or numbers", function()
    assert.has_error(function() c:call("SET", P .. "x", true) end,
                     "command argument 3 must be a string or a number (got boolean)")
    assert.has_error(function() c:call() end, "missing the command name")
    assert.has_error(function() c:command{} end, "expected {name, args...}")
  end)

  it("refuses commands that would change the shared connection", function()
    assert.has_error(function() c:call("SELECT", 1) end, "database number in the URL")
    assert.has_error(function() c:call("multi") end, "transaction = true")
    assert.has_error(function() c:call("SUBSCRIBE", "x") end, "client:subscribe")
    assert.has_error(function() c:call("WATCH", "x") end, "client:eval")
    assert.has_error(function() c:call("AUTH", "x") end, "credentials in the URL")
  end)
end)

describe("command timeout", function()
  it("fails a command that gets no reply in time, then reconnects", function()
    local slow = assert(redis.connect(URL .. "/5", {command_timeout = 0.05}))
    local drops = slow:stats().drops
    -- the server sleeps twenty times the timeout
    local v, err = slow:call("DEBUG", "SLEEP", "1")
    assert.is_nil(v)
    assert.equals("timeout", err.kind)
    assert.is_true(err.retryable)
    -- the stuck connection was reset; the next command gets a fresh one
    local pong
    for _ = 1, 100 do
      pong = slow:call("PING")
      if pong then break end
    end
    assert.equals("PONG", pong)
    assert.is_true(slow:stats().drops > drops)
  end)
end)

describe("client:pipeline", function()
  it("sends every command in one go and returns the replies in order", function()
    c:call("DEL", P .. "p")
    local r = c:pipeline(function(p)
      assert.equals(1, p:call("SET", P .. "p", 10))
      p:call("INCR", P .. "p")
      p:command{"GET", P .. "p"}
      p:call("GET", P .. "nope")
      p:call("LPUSH", P .. "p", "x")
    end)
    assert.equals(5, #r)
    assert.equals("OK", r[1])
    assert.equals(11, r[2])
    assert.equals("11", r[3])
    assert.is_false(r[4])
    assert.equals("WRONGTYPE", r[5].code)
  end)

  it("returns an empty table for an empty pipeline", function()
    assert.same({}, c:pipeline(function() end))
  end)

  it("propagates errors of the pipeline function and forbids using p afterwards", function()
    local kept
    assert.has_error(function()
      c:pipeline(function(p) kept = p; error("inside pipeline") end)
    end, "inside pipeline")
    local saved
    c:pipeline(function(p) saved = p end)
    assert.has_error(function() saved:call("PING") end, "already sent")
    assert.has_error(function()
      c:pipeline(function(p) p:call("SELECT", 2) end)
    end, "database number")
  end)

  it("cannot make engine calls inside the pipeline function", function()
    assert.has_error(function()
      c:pipeline(function(p) c:call("PING") end)
    end, "cannot wait here")
  end)

  it("runs a transaction with {transaction = true} and returns EXEC's replies", function()
    c:call("DEL", P .. "t")
    local r = c:pipeline(function(p)
      p:call("INCR", P .. "t")
      p:call("INCR", P .. "t")
      p:call("GET", P .. "t")
    end, {transaction = true})
    assert.same({1, 2, "2"}, r)
  end)

  it("reports a transaction rejected at queue time with the failing command", function()
    local r, err = c:pipeline(function(p)
      p:call("SET", P .. "t2", "1")
      p:call("NOSUCHCOMMAND")
    end, {transaction = true})
    assert.is_nil(r)
    assert.equals("redis", err.kind)
    assert.equals("EXECABORT", err.code)
    expect(err.message).to_match("command 2:")
    assert.is_nil(c:call("GET", P .. "t2"))
  end)
end)

describe("client:eval", function()
  local script = "return {KEYS[1], ARGV[1], redis.call('INCR', KEYS[1])}"

  it("runs a script with keys and args", function()
    c:call("DEL", P .. "e")
    assert.same({P .. "e", "a1", 1}, c:eval(script, {P .. "e"}, {"a1"}))
    assert.equals(7, c:eval("return 7"))
  end)

  it("uses EVALSHA and falls back to EVAL once after the script cache was flushed", function()
    assert.equals("OK", c:call("SCRIPT", "FLUSH"))
    assert.equals("OK", c:call("CONFIG", "RESETSTAT"))
    c:call("DEL", P .. "e2")
    assert.same({P .. "e2", "x", 1}, c:eval(script, {P .. "e2"}, {"x"}))
    assert.same({P .. "e2", "y", 2}, c:eval(script, {P .. "e2"}, {"y"}))
    local evalsha = info_field("commandstats", "cmdstat_evalsha")
    local eval = info_field("commandstats", "cmdstat_eval")
    expect(evalsha).to_match("^calls=2,")     -- both tried EVALSHA
    expect(eval).to_match("^calls=1,")        -- only the first needed EVAL
  end)

  it("returns script errors as redis errors", function()
    local v, err = c:eval("return redis.error_reply('MYERR it broke')")
    assert.is_nil(v)
    assert.equals("MYERR", err.code)
    assert.equals("MYERR it broke", err.message)
  end)

  it("checks its arguments", function()
    assert.has_error(function() c:eval(script, "notatable") end, "keys must be an array")
    assert.has_error(function() c:eval(script, {}, {{}}) end, "must be a string or a number")
  end)
end)

describe("concurrency", function()
  it("runs 1,000 concurrent commands from spawned tasks on one connection", function()
    local key = P .. "counter"
    c:call("DEL", key)
    local connects = c:stats().connects
    local hs = {}
    for i = 1, 1000 do
      hs[i] = task.spawn(function() return c:call("INCR", key) end)
    end
    local seen = {}
    for i, r in ipairs(task.all(hs)) do
      assert.is_true(r.ok, "task " .. i)
      assert.is_nil(seen[r.value], "duplicate reply " .. tostring(r.value))
      seen[r.value] = true
    end
    for v = 1, 1000 do assert.is_true(seen[v], "missing reply " .. v) end
    assert.equals("1000", c:call("GET", key))
    assert.equals(connects, c:stats().connects)
  end)

  it("keeps each job's replies matched to its own commands", function()
    local hs = {}
    for i = 1, 200 do
      hs[i] = task.spawn(function()
        local k = P .. "own:" .. i
        c:call("SET", k, "value-" .. i)
        task.sleep(0)
        return c:call("GET", k)
      end)
    end
    for i, r in ipairs(task.all(hs)) do
      assert.equals("value-" .. i, r.value)
    end
  end)
end)
