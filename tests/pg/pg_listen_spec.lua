-- weir.pg: LISTEN / NOTIFY.  Needs a server: run through
-- tests/harness/pg.sh with.
local pg = require "weir.pg"
local task = require "weir.task"

local DSN = os.getenv("WEIR_PG_DSN")
local db

setup(function()
  assert(DSN, "WEIR_PG_DSN is not set: run through tests/harness/pg.sh with")
  db = pg.connect(DSN)
end)

local function notify(channel, payload)
  assert(db:query("SELECT pg_notify($1, $2)", channel, payload))
end

describe("db:listen", function()
  it("delivers notifications sent while nobody waits, in order", function()
    local l = assert(db:listen("ls_queue"))
    assert.equals("ls_queue", l:channel())
    local one = pg.connect(DSN, {size = 1})      -- one connection: one sender pid
    local sender = one:query("SELECT pg_backend_pid() AS pid")[1].pid
    assert(one:query("NOTIFY ls_queue, 'one'; NOTIFY ls_queue, 'two'; NOTIFY ls_other, 'x'"))
    assert(one:query("NOTIFY ls_queue, 'three'"))
    local a = assert(l:next(5))
    local b = assert(l:next(5))
    local c = assert(l:next(5))
    assert.same({channel = "ls_queue", payload = "one", pid = sender}, a)
    assert.equals("two", b.payload)
    assert.equals("three", c.payload)
    local none, err = l:next(0)
    assert.is_nil(none)
    assert.equals("timeout", err.kind)
    l:close()
  end)

  it("wakes a waiting next() when a notification arrives", function()
    local l = assert(db:listen("ls_wake"))
    local h = task.spawn(function() return l:next(10) end)
    task.sleep(0)               -- let the task wait
    notify("ls_wake", "hello")
    local ok, note = task.wait(h)
    assert.is_true(ok)
    assert.equals("hello", note.payload)
    l:close()
  end)

  it("times out with kind timeout", function()
    local l = assert(db:listen("ls_quiet"))
    local note, err = l:next(0.02)
    assert.is_nil(note)
    assert.equals("timeout", err.kind)
    assert.is_true(err.retryable)
    l:close()
  end)

  it("quotes the channel name", function()
    local l = assert(db:listen("Mixed Case"))
    assert(db:query([[NOTIFY "Mixed Case", 'quoted']]))
    assert.equals("quoted", assert(l:next(5)).payload)
    l:close()
  end)

  it("closes: a waiter gets kind closed, later calls raise", function()
    local l = assert(db:listen("ls_close"))
    local h = task.spawn(function() return l:next(10) end)
    task.sleep(0)
    l:close()
    local ok, note, err = task.wait(h)
    assert.is_true(ok)
    assert.is_nil(note)
    assert.equals("closed", err.kind)
    assert.has_error(function() l:next(1) end, "closed")
  end)

  it("survives a close racing with a notification that woke a waiter", function()
    -- whichever runs first, the waiter gets the note or kind closed
    for i = 1, 20 do
      local l = assert(db:listen("ls_race"))
      local h = task.spawn(function() return l:next(10) end)
      task.sleep(0)
      notify("ls_race", "n" .. i)
      l:close()
      local ok, note, err = task.wait(h)
      assert.is_true(ok)
      if note then assert.equals("n" .. i, note.payload) else assert.equals("closed", err.kind) end
    end
  end)

  it("reports a lost connection once, then listens again", function()
    local l = assert(db:listen("ls_lost"))
    local pid = assert(db:query(
      [[SELECT pid FROM pg_stat_activity WHERE query = 'LISTEN "ls_lost"']]))[1].pid
    local h = task.spawn(function() return l:next(10) end)
    task.sleep(0)
    assert(db:query("SELECT pg_terminate_backend($1)", pid))
    local ok, note, err = task.wait(h)
    assert.is_true(ok)
    assert.is_nil(note)
    assert.equals("connection", err.kind)
    assert.is_true(err.retryable)
    -- the next call connects and LISTENs again (a new backend: the old
    -- one may still be listed while it exits); it waits for the message
    local h2 = task.spawn(function() return l:next(10) end)
    for _ = 1, 1000 do
      local res = db:query([[SELECT count(*) AS n FROM pg_stat_activity
                             WHERE query = 'LISTEN "ls_lost"' AND state = 'idle' AND pid <> $1]], pid)
      if res[1].n == 1 then break end
      task.sleep(0.005)
    end
    notify("ls_lost", "after")
    local ok2, note2 = task.wait(h2)
    assert.is_true(ok2)
    assert.equals("after", note2.payload)
    l:close()
  end)

  it("closes as a to-be-closed variable", function()
    local function listening()
      return db:query([[SELECT count(*) AS n FROM pg_stat_activity WHERE query = 'LISTEN "ls_scoped"']])[1].n
    end
    do
      local l <close> = assert(db:listen("ls_scoped"))
      assert.equals(1, listening())
    end
    for _ = 1, 1000 do           -- the backend exits once it sees the socket closed
      if listening() == 0 then break end
      task.sleep(0.005)
    end
    assert.equals(0, listening())
  end)

  it("uses a dedicated connection outside the pool's size", function()
    local p = pg.connect(DSN, {size = 1})
    local l = assert(p:listen("ls_dedicated"))
    assert.equals(1, p:query("SELECT 1 AS v")[1].v)
    assert.equals(1, p:stats().open)
    l:close()
  end)

  it("does not expose its shared methods to scripts", function()
    local l = assert(db:listen("ls_sealed"))
    assert.is_false(getmetatable(l))
    assert.is_nil(l.__index)
    l.next = function() return "mine" end       -- this listener only
    local other = assert(db:listen("ls_sealed"))
    assert.equals("timeout", select(2, other:next(0)).kind)
    other:close()
    l:close()
    assert.is_false(getmetatable(db))
    assert.is_nil(db.__index)
  end)

  it("raises on a bad channel", function()
    assert.has_error(function() db:listen("") end, "channel")
    assert.has_error(function() db:listen(5) end, "channel")
  end)
end)
