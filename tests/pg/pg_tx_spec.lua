-- weir.pg: transactions, pool limits and waiting, cancellation.
-- Needs a server: run through tests/harness/pg.sh with.
local pg = require "weir.pg"
local task = require "weir.task"

local DSN = os.getenv("WEIR_PG_DSN")
local db

setup(function()
  assert(DSN, "WEIR_PG_DSN is not set: run through tests/harness/pg.sh with")
  db = pg.connect(DSN)
  assert(db:query("DROP TABLE IF EXISTS tx_t; CREATE TABLE tx_t (id int PRIMARY KEY, v text)"))
end)

before_each(function()
  assert(db:query("TRUNCATE tx_t"))
end)

local function count_rows()
  return db:query("SELECT count(*) AS n FROM tx_t")[1].n
end

-- Waits (bounded) until the server runs a statement matching `pattern`
-- (as a LIKE pattern) on another connection: a condition, not a delay.
local function wait_for_activity(pattern, present)
  for _ = 1, 2000 do
    local res = assert(db:query(
      "SELECT count(*) AS n FROM pg_stat_activity WHERE query LIKE $1 AND pid <> pg_backend_pid() "
        .. "AND state = 'active'", pattern))
    if (res[1].n > 0) == present then return true end
    task.sleep(0.005)
  end
  error("pg_stat_activity never showed " .. pattern .. (present and "" or " gone"))
end

-- Opens `n` connections of pool p (n concurrent statements).  With a
-- short wait_timeout, statements may time out while the connections are
-- still being opened (they go on connecting, then idle): try again.
local function warm(p, n)
  for _ = 1, 200 do
    local hs, all_ok = {}, true
    for i = 1, n do hs[i] = task.spawn(function() return p:query("SELECT pg_sleep(0.01)") end) end
    for _, r in ipairs(task.all(hs)) do
      assert(r.ok, r.error)
      if r.value == nil then all_ok = false end
    end
    local st = p:stats()
    if all_ok and st.open == n and st.idle == n then return end
  end
  error("could not open " .. n .. " connections")
end

describe("db:tx", function()
  it("commits when the function returns, and returns its values", function()
    local a, b, c = db:tx(function(tx)
      assert(tx:query("INSERT INTO tx_t VALUES ($1, $2)", 1, "one"))
      assert(tx:query("INSERT INTO tx_t VALUES ($1, $2)", 2, "two"))
      -- visible inside, not yet outside
      assert.equals(2, tx:query("SELECT count(*) AS n FROM tx_t")[1].n)
      assert.equals(0, count_rows())
      return "done", nil, 3
    end)
    assert.equals("done", a)
    assert.is_nil(b)
    assert.equals(3, c)
    assert.equals(2, count_rows())
  end)

  it("rolls back when the function raises, and re-raises the error as is", function()
    local ok, err = pcall(db.tx, db, function(tx)
      assert(tx:query("INSERT INTO tx_t VALUES (1, 'x')"))
      error({kind = "mine", message = "stop"})
    end)
    assert.is_false(ok)
    assert.equals("mine", err.kind)
    assert.equals(0, count_rows())
    local ok2, err2 = pcall(db.tx, db, function() error("plain string", 0) end)
    assert.is_false(ok2)
    assert.equals("plain string", err2)
  end)

  it("fails the commit of a transaction whose statement failed", function()
    local ok, err = pcall(db.tx, db, function(tx)
      assert(tx:query("INSERT INTO tx_t VALUES (1, 'x')"))
      local res, e = tx:query("INSERT INTO tx_t VALUES (1, 'duplicate')")
      assert.is_nil(res)
      assert.equals("23505", e.sqlstate)
      return "ignored the error"
    end)
    assert.is_false(ok)
    assert.equals("sql", err.kind)
    assert.equals("25P02", err.sqlstate)
    assert.equals(0, count_rows())
  end)

  it("ends the transaction object with the transaction", function()
    local kept
    db:tx(function(tx) kept = tx end)
    assert.has_error(function() kept:query("SELECT 1") end, "this transaction has ended")
    expect(tostring(kept)).to_match("ended")
  end)

  it("refuses two statements at once on one transaction", function()
    db:tx(function(tx)
      local h = task.spawn(function() return tx:query("SELECT pg_sleep(0.05)") end)
      task.sleep(0)   -- let the task send its statement
      assert.has_error(function() tx:query("SELECT 1") end, "one at a time")
      local ok, res = task.wait(h)
      assert.is_true(ok)
      assert.equals(1, res.count)
    end)
  end)

  it("pins one connection for the whole transaction", function()
    local pids = db:tx(function(tx)
      local a = tx:query("SELECT pg_backend_pid() AS pid")[1].pid
      task.sleep(0.001)
      local b = tx:query("SELECT pg_backend_pid() AS pid")[1].pid
      return {a, b}
    end)
    assert.equals(pids[1], pids[2])
  end)

  it("raises when fn is not a function", function()
    assert.has_error(function() db:tx("SELECT 1") end, "expected a function")
  end)
end)

describe("pool limits", function()
  it("serves 10 transactions with 2 connections, in turn", function()
    local p = pg.connect(DSN, {size = 2})
    local hs = {}
    for i = 1, 10 do
      hs[i] = task.spawn(function()
        return p:tx(function(tx)
          assert(tx:query("SELECT pg_sleep(0.2)"))
          return i
        end)
      end)
    end
    for i, r in ipairs(task.all(hs)) do
      assert.is_true(r.ok, r.error)
      assert.equals(i, r.value)
    end
    local st = p:stats()
    assert.equals(2, st.open)
    assert.equals(2, st.connects)
    assert.equals(0, st.waiting)
    assert.equals(2, st.idle)
  end)

  it("fails waiters with pool_timeout after wait_timeout", function()
    local p = pg.connect(DSN, {size = 2, wait_timeout = 0.05})
    warm(p, 2)
    local hs = {}
    for i = 1, 10 do
      hs[i] = task.spawn(function()
        return p:tx(function(tx) assert(tx:query("SELECT pg_sleep(0.2)")) end)
      end)
    end
    local ok, timeouts = 0, 0
    for _, r in ipairs(task.all(hs)) do
      if r.ok then
        ok = ok + 1
      else
        assert.equals("pool_timeout", r.error.kind)
        assert.is_true(r.error.retryable)
        expect(r.error.message).to_match("no free connection within 0.05 s")
        timeouts = timeouts + 1
      end
    end
    assert.equals(2, ok)
    assert.equals(8, timeouts)
    -- the pool recovers once the holders are done
    assert.equals(1, p:query("SELECT 1 AS v")[1].v)
  end)

  it("fails at once with wait_timeout = 0 when every connection is busy", function()
    local p = pg.connect(DSN, {size = 1, wait_timeout = 0})
    local h = task.spawn(function() return p:query("SELECT pg_sleep(0.1)") end)
    task.sleep(0)
    local res, err = p:query("SELECT 1")
    assert.is_nil(res)
    assert.equals("pool_timeout", err.kind)
    assert.is_true((task.wait(h)))
  end)
end)

describe("cancellation", function()
  it("cancelling a job mid-query stops the statement and leaves the pool usable", function()
    local p = pg.connect(DSN, {size = 1})
    assert(p:query("SELECT 1"))
    local before = p:stats()
    local h = task.spawn(function() return p:query("SELECT pg_sleep(30) AS cancel_me") end)
    wait_for_activity("SELECT pg_sleep(30) AS cancel_me", true)
    task.cancel(h)
    assert.equals("failed", task.status(h))
    -- the server stops the statement (PQcancel) and the connection is gone
    wait_for_activity("SELECT pg_sleep(30) AS cancel_me", false)
    assert.equals(before.discarded + 1, p:stats().discarded)
    assert.equals(7, p:query("SELECT 7 AS v")[1].v)
    assert.equals(before.connects + 1, p:stats().connects)
  end)

  it("a transaction killed while it waits rolls back and returns its connection", function()
    local p = pg.connect(DSN, {size = 1, statement_timeout = 5})
    local inside, pid = false, nil
    local h = task.spawn(function()
      p:tx(function(tx)
        assert(tx:query("INSERT INTO tx_t VALUES (1, 'never committed')"))
        pid = tx:query("SELECT pg_backend_pid() AS pid")[1].pid
        inside = true
        task.sleep(30)
      end)
    end)
    while not inside do task.sleep(0) end
    local discarded = p:stats().discarded
    task.cancel(h)
    -- the single connection is rolled back and reused
    local res = assert(p:query("SELECT pg_backend_pid() AS pid, count(*) AS n FROM tx_t GROUP BY 1"))
    assert.equals(0, #res)
    assert.equals(pid, p:query("SELECT pg_backend_pid() AS pid")[1].pid)
    assert.equals(discarded, p:stats().discarded)
    assert.equals(0, count_rows())
  end)

  it("a transaction killed mid-statement discards its connection", function()
    local p = pg.connect(DSN, {size = 1})
    local h = task.spawn(function()
      p:tx(function(tx)
        assert(tx:query("INSERT INTO tx_t VALUES (2, 'never committed')"))
        tx:query("SELECT pg_sleep(30) AS tx_cancel_me")
      end)
    end)
    wait_for_activity("SELECT pg_sleep(30) AS tx_cancel_me", true)
    task.cancel(h)
    assert.equals(1, p:query("SELECT 1 AS v")[1].v)
    wait_for_activity("SELECT pg_sleep(30) AS tx_cancel_me", false)
    assert.equals(0, count_rows())
  end)
end)
