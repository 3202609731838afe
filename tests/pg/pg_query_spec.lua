-- weir.pg: db:query, parameter binding, type mapping, errors, pools.
-- Needs a server: run through tests/harness/pg.sh with (tests/cli/pg.sh
-- does).
local pg = require "weir.pg"
local json = require "weir.json"

local DSN = os.getenv("WEIR_PG_DSN")
local DSN_UNIX = os.getenv("WEIR_PG_DSN_UNIX")
local db

setup(function()
  assert(DSN, "WEIR_PG_DSN is not set: run through tests/harness/pg.sh with")
  db = pg.connect(DSN)
end)

-- one value through "SELECT $1::type"
local function roundtrip(value, sqltype)
  local res, err = db:query("SELECT $1::" .. sqltype .. " AS v", value)
  assert(res, err and err.message)
  return res[1].v
end

describe("pg.connect", function()
  it("returns a pool, shared per DSN and options, without connecting", function()
    local a = pg.connect(DSN, {size = 3})
    local b = pg.connect(DSN, {size = 3})
    expect(tostring(a)).to_match("^pg pool 127%.0%.0%.1:%d+/postgres$")
    assert.equals(a:stats().connects, b:stats().connects)
    assert.equals(3, a:stats().size)
    assert.equals(1, b:query("SELECT 1 AS one")[1].one)
    assert.equals(1, a:stats().open)
  end)

  it("connects over a unix socket", function()
    assert(DSN_UNIX, "WEIR_PG_DSN_UNIX is not set")
    local u = pg.connect(DSN_UNIX)
    local res = assert(u:query("SELECT inet_client_addr() IS NULL AS local"))
    assert.is_true(res[1]["local"])
  end)

  it("raises on a malformed DSN and bad options", function()
    assert.has_error(function() pg.connect("host=x port") end, "bad DSN")
    assert.has_error(function() pg.connect(DSN, {size = 0}) end, "size")
    assert.has_error(function() pg.connect(DSN, {size = 1.5}) end, "size")
    assert.has_error(function() pg.connect(DSN, {wait_timeout = -1}) end, "wait_timeout")
    assert.has_error(function() pg.connect(DSN, {sise = 2}) end, "unknown option 'sise'")
  end)

  it("fails with a retryable connection error when nothing listens, then backs off", function()
    local dead = pg.connect("host=127.0.0.1 port=1 user=weir dbname=postgres connect_timeout=2")
    local res, err = dead:query("SELECT 1")
    assert.is_nil(res)
    assert.equals("connection", err.kind)
    assert.is_true(err.retryable)
    expect(err.message).to_match("127%.0%.0%.1:1/postgres: cannot connect")
    assert.equals(1, dead:stats().connect_failures)
    -- again: within the backoff window it fails without a new attempt and
    -- says when the next one is (tests/unit/test_pg.c checks the window
    -- with the engine's clock; here time is not under our control)
    local res2, err2 = dead:query("SELECT 1")
    assert.is_nil(res2)
    assert.equals("connection", err2.kind)
    expect(err2.message).to_match("cannot connect")
  end)
end)

describe("db:query results", function()
  it("returns rows keyed by column, count, fields and command", function()
    local res = assert(db:query("SELECT g AS n, 'r' || g AS label FROM generate_series(1, 3) g"))
    assert.equals(3, #res)
    assert.equals(3, res.count)
    assert.same({"n", "label"}, res.fields)
    assert.equals("SELECT", res.command)
    assert.same({n = 2, label = "r2"}, res[2])
  end)

  it("reports affected rows for DML", function()
    assert(db:query("DROP TABLE IF EXISTS q_dml; CREATE TABLE q_dml (id int)"))
    local res = assert(db:query("INSERT INTO q_dml SELECT generate_series(1, 7)"))
    assert.equals(7, res.count)
    assert.equals(0, #res)
    assert.equals("INSERT", res.command)
    res = assert(db:query("DELETE FROM q_dml WHERE id > $1", 4))
    assert.equals(3, res.count)
  end)

  it("runs several statements without parameters and keeps the last result", function()
    local res = assert(db:query("SELECT 1 AS a; SELECT 2 AS b"))
    assert.same({b = 2}, res[1])
  end)
end)

describe("type mapping", function()
  it("maps integers, including int8 beyond 2^53", function()
    assert.equals(32767, roundtrip(32767, "int2"))
    assert.equals(-2147483648, roundtrip(-2147483648, "int4"))
    assert.equals(math.maxinteger, roundtrip(math.maxinteger, "int8"))
    assert.equals(9007199254740993, roundtrip("9007199254740993", "int8"))
    assert.equals(math.type(roundtrip(1, "int8")), "integer")
  end)

  it("maps floats exactly, with NaN and infinities", function()
    assert.equals(0.1, roundtrip(0.1, "float8"))
    assert.equals(1 / 3, roundtrip(1 / 3, "float8"))
    assert.equals(math.huge, roundtrip(math.huge, "float8"))
    assert.equals(-math.huge, roundtrip(-math.huge, "float8"))
    local nan = roundtrip(0 / 0, "float8")
    assert.is_true(nan ~= nan)
    assert.equals("float", math.type(roundtrip(2, "float8")))
  end)

  it("keeps numeric as a string: no silent precision loss", function()
    local n = "12345678901234567890.123456789012345678"
    assert.equals(n, roundtrip(n, "numeric"))
    assert.equals("0.10", roundtrip("0.10", "numeric(5,2)"))
  end)

  it("maps booleans, text, uuid and other types to their text", function()
    assert.is_true(roundtrip(true, "bool"))
    assert.is_false(roundtrip(false, "bool"))
    assert.equals("héllo\twörld\n", roundtrip("héllo\twörld\n", "text"))
    assert.equals("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
      roundtrip("A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11", "uuid"))
    assert.equals("{1,2,3}", roundtrip("{1,2,3}", "int[]"))
    assert.equals("name", roundtrip("name", "name"))
  end)

  it("maps NULL to json.null, both ways", function()
    local res = assert(db:query("SELECT $1::int AS a, $2::text AS b, NULL AS c", nil, json.null))
    assert.equals(json.null, res[1].a)
    assert.equals(json.null, res[1].b)
    assert.equals(json.null, res[1].c)
    assert.equals(pg.null, json.null)
  end)

  it("round-trips bytea with zero bytes and invalid UTF-8", function()
    local bytes = "\0\1\2\255\254" .. ("\0"):rep(10) .. "\\x41"
    assert.equals(bytes, roundtrip(bytes, "bytea"))
    assert.equals(#bytes, assert(db:query("SELECT octet_length($1::bytea) AS n", bytes))[1].n)
    -- valid text with a backslash goes through pg.bytea as raw bytes
    assert.equals("\\x41", roundtrip(pg.bytea("\\x41"), "bytea"))
    assert.equals("", roundtrip(pg.bytea(""), "bytea"))
  end)

  it("decodes json and jsonb, nested, keeping empty arrays and objects", function()
    local doc = {a = {1, 2, {b = json.array({})}}, c = {}, d = "x", e = json.null}
    local res = assert(db:query("SELECT $1::jsonb AS jb, $1::json AS j", doc))
    for _, v in ipairs{res[1].jb, res[1].j} do
      assert.equals(2, v.a[2])
      assert.equals("x", v.d)
      assert.equals(json.null, v.e)
      assert.equals("[]", json.encode(v.a[3].b))
      assert.equals("{}", json.encode(v.c))
    end
    assert.equals('[1,"two",[]]', json.encode(roundtrip('[1,"two",[]]', "jsonb")))
  end)

  it("writes timestamptz in ISO 8601, normalised to UTC", function()
    assert.equals("2024-01-01T10:00:00.123Z", roundtrip("2024-01-01 10:00:00.123+00", "timestamptz"))
    assert.equals("2024-01-01T04:30:00Z", roundtrip("2024-01-01 10:00:00+05:30", "timestamptz"))
    assert.equals("2023-12-31T23:59:59.5Z", roundtrip("2024-01-01 01:59:59.5+02", "timestamptz"))
    assert.equals("infinity", roundtrip("infinity", "timestamptz"))
    -- still UTC when the session's time zone is changed
    assert(db:query("SET TimeZone TO 'America/New_York'"))
    local res = assert(db:query(
      "SELECT '2024-07-01 12:00:00+00'::timestamptz AS v, current_setting('TimeZone') AS tz"))
    assert(db:query("SET TimeZone TO 'UTC'"))
    if res[1].tz == "America/New_York" then   -- the pool may have given us one connection
      assert.equals("2024-07-01T12:00:00Z", res[1].v)
    end
  end)

  it("writes timestamp without a zone, and dates", function()
    assert.equals("2024-02-29T23:59:59.999999", roundtrip("2024-02-29 23:59:59.999999", "timestamp"))
    assert.equals("2024-02-29", roundtrip("2024-02-29", "date"))
  end)

  it("binds integers, floats and booleans as text the server converts", function()
    local res = assert(db:query("SELECT $1::int + 1 AS i, $2::float8 * 2 AS f, NOT $3::bool AS b",
      41, 1.25, false))
    assert.same({i = 42, f = 2.5, b = true}, res[1])
  end)

  it("raises on values it cannot bind", function()
    assert.has_error(function() db:query("SELECT $1", function() end) end, "cannot bind a function")
    assert.has_error(function() db:query("SELECT $1", {f = function() end}) end)
  end)
end)

describe("errors", function()
  it("reports a syntax error with sqlstate 42601 and its position", function()
    -- "FORM" parses as a column alias: the error is at "t"
    local res, err = db:query("SELECT 1 FORM t")
    assert.is_nil(res)
    assert.equals("sql", err.kind)
    assert.equals("42601", err.sqlstate)
    assert.equals(15, err.position)
    assert.is_false(err.retryable)
    expect(err.message).to_match("syntax error")
  end)

  it("reports a missing table with 42P01 and position", function()
    local res, err = db:query("SELECT * FROM no_such_table")
    assert.is_nil(res)
    assert.equals("42P01", err.sqlstate)
    assert.equals(15, err.position)
    expect(err.message).to_match("no_such_table")
  end)

  it("carries detail and hint", function()
    assert(db:query("DROP TABLE IF EXISTS q_uniq; CREATE TABLE q_uniq (id int PRIMARY KEY)"))
    assert(db:query("INSERT INTO q_uniq VALUES (1)"))
    local res, err = db:query("INSERT INTO q_uniq VALUES ($1)", 1)
    assert.is_nil(res)
    assert.equals("23505", err.sqlstate)
    expect(err.detail).to_match("already exists")
    local _, e2 = db:query("SELECT pg_no_such_function(1)")
    assert.equals("42883", e2.sqlstate)
    expect(e2.hint).to_match("No function matches")
  end)

  it("marks serialization and deadlock classes retryable", function()
    local _, err = db:query("DO $$ BEGIN RAISE EXCEPTION USING ERRCODE = '40001'; END $$")
    assert.equals("40001", err.sqlstate)
    assert.is_true(err.retryable)
  end)

  it("applies statement_timeout to every connection of the pool", function()
    local p = pg.connect(DSN, {statement_timeout = 0.05})
    local res, err = p:query("SELECT pg_sleep(5)")
    assert.is_nil(res)
    assert.equals("sql", err.kind)
    assert.equals("57014", err.sqlstate)
    assert.equals("50ms", p:query("SHOW statement_timeout")[1].statement_timeout)
  end)

  it("leaves the connection usable after an error", function()
    local small = pg.connect(DSN, {size = 1})
    assert.is_nil((small:query("SELECT 1/0")))
    assert.equals(2, small:query("SELECT 2 AS v")[1].v)
  end)

  it("refuses COPY FROM STDIN through query", function()
    assert(db:query("DROP TABLE IF EXISTS q_copy; CREATE TABLE q_copy (a int)"))
    local res, err = db:query("COPY q_copy FROM STDIN")
    assert.is_nil(res)
    expect(err.message).to_match("copy_in")
    assert.equals(1, db:query("SELECT 1 AS v")[1].v)
    local out, err2 = db:query("COPY (SELECT g FROM generate_series(1, 50000) g) TO STDOUT")
    assert.is_nil(out)
    expect(err2.message).to_match("COPY TO STDOUT is not supported")
    assert.equals(2, db:query("SELECT 2 AS v")[1].v)
  end)
end)
