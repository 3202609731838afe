-- weir.pg: copy_in and upsert.  Needs a server: run through
-- tests/harness/pg.sh with.
local pg = require "weir.pg"
local json = require "weir.json"
local task = require "weir.task"

local DSN = os.getenv("WEIR_PG_DSN")
local db

setup(function()
  assert(DSN, "WEIR_PG_DSN is not set: run through tests/harness/pg.sh with")
  db = pg.connect(DSN)
  assert(db:query([[
    DROP TABLE IF EXISTS cp_t, "Cp Odd", up_t, up_multi;
    CREATE TABLE cp_t (id int8, name text, score float8, ok bool, doc jsonb, raw bytea, at timestamptz);
    CREATE TABLE "Cp Odd" ("Mixed Case" text, "tab	col" int);
    CREATE TABLE up_t (id int PRIMARY KEY, name text, n int DEFAULT 0, touched bool DEFAULT false);
    CREATE TABLE up_multi (a int, b text, v text, PRIMARY KEY (a, b))]]))
end)

before_each(function()
  assert(db:query('TRUNCATE cp_t, "Cp Odd", up_t, up_multi'))
end)

describe("db:copy_in", function()
  it("loads 100k rows and returns the count", function()
    local rows = {}
    for i = 1, 100000 do rows[i] = {i, "name " .. i, i / 4} end
    local t0 = task.now()
    local n, err = db:copy_in("cp_t", {"id", "name", "score"}, rows)
    local secs = task.now() - t0
    assert(n, err and err.message)
    assert.equals(100000, n)
    local res = db:query("SELECT count(*) AS n, sum(id) AS s, max(score) AS m FROM cp_t")[1]
    assert.equals(100000, res.n)
    assert.equals("5000050000", res.s)     -- sum(int8) is numeric: a string
    assert.equals(25000.0, res.m)
    print(string.format("copy_in: 100000 rows in %.3f s (%.0f rows/s)", secs, 100000 / secs))
  end)

  it("escapes text and round-trips every kind of value, NULLs included", function()
    local nasty = "tab\there\nnewline\r\\back\\slash \\N not null, \"quotes\" é"
    local rows = {
      {id = 1, name = nasty, score = 0.1, ok = true, doc = {a = {1, json.array({})}, b = json.null},
       raw = "\0\1\255\\", at = "2024-01-01T10:00:00.5+02:00"},
      {id = 2, name = json.null, score = json.null, ok = false, doc = json.null, raw = json.null},
      {3, "positional", 1e300, json.null, {x = "y"}, pg.bytea("\\x"), json.null},
    }
    local n = assert(db:copy_in("cp_t", {"id", "name", "score", "ok", "doc", "raw", "at"}, rows))
    assert.equals(3, n)
    local res = assert(db:query("SELECT * FROM cp_t ORDER BY id"))
    assert.equals(nasty, res[1].name)
    assert.equals(0.1, res[1].score)
    assert.is_true(res[1].ok)
    assert.equals('{"a":[1,[]],"b":null}', json.encode(res[1].doc, {sort_keys = true}))
    assert.equals("\0\1\255\\", res[1].raw)
    assert.equals("2024-01-01T08:00:00.5Z", res[1].at)
    for _, col in ipairs{"name", "score", "doc", "raw", "at"} do
      assert.equals(json.null, res[2][col], col)
    end
    assert.is_false(res[2].ok)
    assert.equals(json.null, res[3].ok)
    assert.equals("positional", res[3].name)
    assert.equals(1e300, res[3].score)
    assert.equals("y", res[3].doc.x)
    assert.equals("\\x", res[3].raw)
  end)

  it("quotes table and column names", function()
    assert.equals(1, assert(db:copy_in("Cp Odd", {"Mixed Case", "tab\tcol"}, {{"v", 7}})))
    local res = assert(db:query('SELECT * FROM "Cp Odd"'))
    assert.same({["Mixed Case"] = "v", ["tab\tcol"] = 7}, res[1])
    assert.equals(0, assert(db:copy_in("public.Cp Odd", {"Mixed Case"}, {})))
  end)

  it("returns the server's error and loads nothing when a row is bad", function()
    local n, err = db:copy_in("cp_t", {"id", "name"}, {{1, "a"}, {"not a number", "b"}})
    assert.is_nil(n)
    assert.equals("sql", err.kind)
    assert.equals("22P02", err.sqlstate)
    assert.equals(0, db:query("SELECT count(*) AS n FROM cp_t")[1].n)
    local n2, err2 = db:copy_in("no_such_table", {"a"}, {{1}})
    assert.is_nil(n2)
    assert.equals("42P01", err2.sqlstate)
  end)

  it("raises on bad arguments and unsendable values", function()
    assert.has_error(function() db:copy_in("cp_t", {}, {}) end, "columns")
    assert.has_error(function() db:copy_in("cp_t", {"id"}, "rows") end, "rows")
    assert.has_error(function() db:copy_in("cp_t", {"id"}, {5}) end, "row 1 is a number")
    assert.has_error(function() db:copy_in("cp_t", {"name"}, {{"a\0b"}}) end, "zero byte")
  end)

  it("runs inside a transaction with tx:copy_in", function()
    local ok = pcall(db.tx, db, function(tx)
      assert.equals(2, assert(tx:copy_in("cp_t", {"id"}, {{1}, {2}})))
      assert.equals(2, tx:query("SELECT count(*) AS n FROM cp_t")[1].n)
      error("roll it back")
    end)
    assert.is_false(ok)
    assert.equals(0, db:query("SELECT count(*) AS n FROM cp_t")[1].n)
  end)
end)

describe("db:upsert", function()
  it("inserts, then updates, and counts each", function()
    local rows = {}
    for i = 1, 10 do rows[i] = {id = i, name = "first " .. i} end
    local r = assert(db:upsert("up_t", rows, {key = {"id"}}))
    assert.same({inserted = 10, updated = 0}, r)
    local again = {}
    for i = 6, 15 do again[#again + 1] = {id = i, name = "second " .. i} end
    r = assert(db:upsert("up_t", again, {key = "id", columns = {"id", "name"}, batch = 3}))
    assert.same({inserted = 5, updated = 5}, r)
    local res = db:query("SELECT id, name, n FROM up_t ORDER BY id")
    assert.equals(15, #res)
    assert.equals("first 5", res[5].name)
    assert.equals("second 6", res[6].name)
    assert.equals(0, res[15].n)      -- columns not given keep their defaults
  end)

  it("leaves columns it does not send untouched on update", function()
    assert(db:query("INSERT INTO up_t (id, name, n) VALUES (1, 'a', 41)"))
    assert.same({inserted = 0, updated = 1},
      assert(db:upsert("up_t", {{id = 1, name = "b"}}, {key = {"id"}})))
    assert.same({id = 1, name = "b", n = 41, touched = false}, db:query("SELECT * FROM up_t")[1])
  end)

  it("keeps the last row of a key repeated in one batch", function()
    local r = assert(db:upsert("up_t", {{id = 1, name = "old"}, {id = 1, name = "new"}},
      {key = {"id"}}))
    assert.same({inserted = 1, updated = 0}, r)
    assert.equals("new", db:query("SELECT name FROM up_t WHERE id = 1")[1].name)
  end)

  it("supports composite keys and key-only rows", function()
    local r = assert(db:upsert("up_multi", {{a = 1, b = "x", v = "1"}, {a = 1, b = "y", v = "2"}},
      {key = {"a", "b"}}))
    assert.same({inserted = 2, updated = 0}, r)
    r = assert(db:upsert("up_multi", {{1, "x"}, {2, "z"}}, {key = {"a", "b"}, columns = {"a", "b"}}))
    assert.same({inserted = 1, updated = 0}, r)     -- DO NOTHING for the existing key
    assert.equals(3, db:query("SELECT count(*) AS n FROM up_multi")[1].n)
  end)

  it("streams rows from an iterator in batches", function()
    local i = 0
    local function next_row()
      i = i + 1
      if i <= 2500 then return {id = i, name = "it " .. i} end
    end
    local r = assert(db:upsert("up_t", next_row, {key = {"id"}, columns = {"id", "name"}, batch = 1000}))
    assert.same({inserted = 2500, updated = 0}, r)
    assert.equals(2500, db:query("SELECT count(*) AS n FROM up_t")[1].n)
  end)

  it("upserts 50k rows twice and reports rows/s", function()
    local rows = {}
    for i = 1, 50000 do rows[i] = {id = i, name = "n" .. i, n = i} end
    local t0 = task.now()
    assert.same({inserted = 50000, updated = 0}, assert(db:upsert("up_t", rows, {key = {"id"}})))
    local t1 = task.now()
    assert.same({inserted = 0, updated = 50000}, assert(db:upsert("up_t", rows, {key = {"id"}})))
    local t2 = task.now()
    print(string.format("upsert: 50000 inserts in %.3f s (%.0f rows/s), 50000 updates in %.3f s (%.0f rows/s)",
      t1 - t0, 50000 / (t1 - t0), t2 - t1, 50000 / (t2 - t1)))
  end)

  it("runs in the caller's transaction with tx:upsert, twice", function()
    db:tx(function(tx)
      assert.same({inserted = 1, updated = 0}, assert(tx:upsert("up_t", {{id = 1, name = "a"}}, {key = {"id"}})))
      assert.same({inserted = 0, updated = 1}, assert(tx:upsert("up_t", {{id = 1, name = "b"}}, {key = {"id"}})))
    end)
    assert.equals("b", db:query("SELECT name FROM up_t")[1].name)
  end)

  it("returns the server's error when the key has no unique index", function()
    local r, err = db:upsert("up_t", {{id = 1, name = "x"}}, {key = {"name"}})
    assert.is_nil(r)
    assert.equals("42P10", err.sqlstate)
    assert.equals(0, db:query("SELECT count(*) AS n FROM up_t")[1].n)
  end)

  it("raises on bad options", function()
    assert.has_error(function() db:upsert("up_t", {}, {}) end, "opts.key")
    assert.has_error(function() db:upsert("up_t", {}, {key = "id"}) end, "opts.columns is required")
    assert.has_error(function() db:upsert("up_t", {{id = 1}}, {key = "name"}) end, "not in columns")
    assert.has_error(function() db:upsert("up_t", {{id = 1}}, {key = "id", batch = 0}) end, "batch")
  end)
end)
