-- Crash-test sync (tests/cli/crash_pg.sh): copies N deterministic records
-- into table items in batches; each batch writes its rows, their ledger
-- entries and the cursor in ONE PostgreSQL transaction.  Killed with -9
-- at random points and restarted, it must end with every row exactly
-- once (writes = 1: a row is never written twice) and the cursor at N.
local pg = require "weir.pg"
local cursor = require "weir.cursor"
local ledger = require "weir.ledger"
local params = ...
local N, B = tonumber(params.n or 3000), tonumber(params.batch or 100)
local db = pg.connect(os.getenv("WEIR_PG_DSN"))
local pos = cursor.get("pos") or 0
while pos < N do
  local last = math.min(pos + B, N)
  local ids, vals = {}, {}
  for id = pos + 1, last do ids[#ids + 1] = id; vals[#vals + 1] = "v" .. id end
  db:tx(function(tx)
    local res, err = tx:query(
      "INSERT INTO items (id, v, writes) SELECT i, v, 1 FROM unnest($1::bigint[], $2::text[]) AS t(i, v)"
      .. " ON CONFLICT (id) DO UPDATE SET writes = items.writes + 1",
      "{" .. table.concat(ids, ",") .. "}", "{" .. table.concat(vals, ",") .. "}")
    if not res then error(err) end
    for i = 1, #ids do ledger.record("items", ids[i], {v = vals[i]}, {tx = tx}) end
    cursor.set("pos", last, {tx = tx})
  end)
  pos = last
end
return pos
