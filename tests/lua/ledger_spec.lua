-- weir.ledger on the embedded store (WEIR_DATA_DIR is per test).
local ledger = require "weir.ledger"
local json = require "weir.json"

local n = 0
local function scope() n = n + 1; return "scope" .. n .. "_" .. tostring(os.time()) end

describe("ledger.hash", function()
  it("is the same for the same content whatever the key order or float form", function()
    local a = ledger.hash({b = 1, a = {x = "y", list = {1, 2}}})
    local b = ledger.hash({a = {list = {1, 2}, x = "y"}, b = 1})
    local c = ledger.hash({a = {list = {1.0, 2}, x = "y"}, b = 1.0})
    assert.equals(a, b)
    assert.equals(a, c)
    assert.equals(64, #a)
    expect(a).to_match("^[0-9a-f]+$")
  end)

  it("differs when content differs, also [] versus {}", function()
    assert.is_true(ledger.hash({v = 1}) ~= ledger.hash({v = 2}))
    assert.is_true(ledger.hash({v = json.array({})}) ~= ledger.hash({v = {}}))
  end)

  it("refuses what JSON cannot hold, naming the path", function()
    assert.has_error(function() ledger.hash({f = function() end}) end, "$.f")
  end)
end)

describe("ledger.check / record", function()
  it("walks new -> unchanged -> changed", function()
    local s = scope()
    assert.equals("new", (ledger.check(s, "k1", {v = 1})))
    local h = ledger.record(s, "k1", {v = 1}, {origin = "pull", remote_id = "R1", etag = "e1",
                                              outcome = {status = 201}})
    assert.equals(ledger.hash({v = 1}), h)
    local status, entry = ledger.check(s, "k1", {v = 1})
    assert.equals("unchanged", status)
    assert.equals("R1", entry.remote_id)
    assert.equals("e1", entry.etag)
    assert.equals(201, entry.outcome.status)
    assert.equals("pull", entry.origin)
    assert.equals("number", math.type(entry.updated_at) and "number")
    assert.equals("changed", (ledger.check(s, "k1", {v = 2})))
  end)

  it("keeps remote id, etag and outcome when a later record omits them", function()
    local s = scope()
    ledger.record(s, "k", {v = 1}, {remote_id = "R", etag = "E", outcome = {ok = true}})
    ledger.record(s, "k", {v = 2}, {origin = "push"})
    local e = ledger.get(s, "k")
    assert.equals("R", e.remote_id)
    assert.equals("E", e.etag)
    assert.is_true(e.outcome.ok)
    assert.equals("push", e.origin)
    assert.equals(ledger.hash({v = 2}), e.hash)
  end)

  it("accepts integer keys", function()
    local s = scope()
    ledger.record(s, 42, {v = 1})
    assert.equals("unchanged", (ledger.check(s, 42, {v = 1})))
    assert.equals("42", ledger.get(s, "42").key)
  end)

  it("validates its arguments", function()
    assert.has_error(function() ledger.check("", "k", {}) end, "scope must not be empty")
    assert.has_error(function() ledger.record("s", "k", {}, {origin = {}}) end, "origin")
  end)
end)

describe("ledger.is_echo (loop prevention)", function()
  it("recognises our own write coming back from the other side", function()
    local s = scope()
    -- we pushed this row to the remote side
    ledger.record(s, "row1", {title = "A"}, {origin = "push"})
    -- the pull sees it come back unchanged: an echo, to skip
    assert.is_true(ledger.is_echo(s, "row1", {title = "A"}, "pull"))
    -- a real remote edit is not an echo
    assert.is_false(ledger.is_echo(s, "row1", {title = "B"}, "pull"))
    -- our own side seeing its own write is not an echo either
    assert.is_false(ledger.is_echo(s, "row1", {title = "A"}, "push"))
    -- unknown keys are never echoes
    assert.is_false(ledger.is_echo(s, "nope", {title = "A"}, "pull"))
  end)
end)

describe("batches, scan, count, forget", function()
  it("record_many and check_many work in one transaction each", function()
    local s = scope()
    local batch = {}
    for i = 1, 500 do batch["k" .. i] = {i = i} end
    assert.equals(500, ledger.record_many(s, batch, {origin = "pull"}))
    local probe = {k1 = {i = 1}, k2 = {i = 99}, k999 = {i = 999}}
    local st = ledger.check_many(s, probe)
    assert.same({k1 = "unchanged", k2 = "changed", k999 = "new"}, st)
    assert.equals(500, ledger.count(s))
  end)

  it("batches larger than one statement chunk (1000 keys) stay consistent", function()
    local s = scope()
    local batch = {}
    for i = 1, 2500 do batch[i] = {i = i} end          -- integer keys
    assert.equals(2500, ledger.record_many(s, batch))
    batch[7] = {i = "changed"}
    batch[2501] = {i = 2501}
    local st = ledger.check_many(s, batch)
    local counts = {}
    for _, v in pairs(st) do counts[v] = (counts[v] or 0) + 1 end
    assert.same({unchanged = 2499, changed = 1, new = 1}, counts)
    assert.equals("changed", st["7"])                    -- keys come back as strings
    assert.equals(2500, ledger.count(s))
  end)

  it("keys with quotes, backslashes, commas and braces survive batches", function()
    local s = scope()
    local odd = {['a"b'] = {1}, ['c\\d'] = {2}, ["e,f"] = {3}, ["{g}"] = {4}, [" h "] = {5}}
    assert.equals(5, ledger.record_many(s, odd))
    local st = ledger.check_many(s, odd)
    for k in pairs(odd) do assert.equals("unchanged", st[k], k) end
    assert.equals("unchanged", (ledger.check(s, 'a"b', {1})))
  end)

  it("scan pages by key", function()
    local s = scope()
    ledger.record_many(s, {a = {1}, b = {2}, c = {3}})
    local first = ledger.scan(s, {limit = 2})
    assert.equals(2, #first)
    assert.same({"a", "b"}, {first[1].key, first[2].key})
    local rest = ledger.scan(s, {after = "b"})
    assert.equals(1, #rest)
    assert.equals("c", rest[1].key)
  end)

  it("forget removes an entry once", function()
    local s = scope()
    ledger.record(s, "x", {1})
    assert.is_true(ledger.forget(s, "x"))
    assert.is_false(ledger.forget(s, "x"))
    assert.is_nil(ledger.get(s, "x"))
  end)

  it("empty batches are no-ops", function()
    assert.equals(0, ledger.record_many(scope(), {}))
    assert.same({}, ledger.check_many(scope(), {}))
  end)
end)
