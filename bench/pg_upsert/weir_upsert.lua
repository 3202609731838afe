--[[
weir_upsert.lua -- the weir side of the PostgreSQL upsert benchmark.

  weir run bench/pg_upsert/weir_upsert.lua --set n=N --set batch=B \
    --set table=T --set ledger=on|off [--set scope=S]

Needs WEIR_PG_DSN (and WEIR_ENV_ALLOW naming it).  Generates rows 1..N
from pg_rows.lua, B at a time (never all of them in memory).  Per batch,
with the ledger on: ledger.check_many, db:upsert of the rows that are
not "unchanged", ledger.record_many of those rows.  The ledger lives in
whatever store weir was started with (WEIR_STORE_URL: the same
PostgreSQL, or SQLite).  Returns one table, printed by `weir run` as
JSON, with the time split between generation, ledger and upsert
(task.now, monotonic wall time).
]]
local params = ...
local pg = require "weir.pg"
local ledger = require "weir.ledger"
local task = require "weir.task"
local rows = require "pg_rows"

local n = tonumber(params.n) or 1000000
local batch = tonumber(params.batch) or 5000
local tbl = params.table or "t_weir"
local use_ledger = (params.ledger or "on") == "on"
local scope = params.scope or "bench-pg-upsert"

local db = pg.connect(assert(os.getenv("WEIR_PG_DSN"), "WEIR_PG_DSN is not set"), {size = 2})
local opts = {key = {"id"}, columns = rows.columns, batch = batch}

local inserted, updated, skipped = 0, 0, 0
local t_gen, t_ledger, t_upsert = 0, 0, 0
local t0 = task.now()
for first = 1, n, batch do
  local last = math.min(first + batch - 1, n)
  local ta = task.now()
  local list, by_id = {}, {}
  for i = first, last do
    local r = rows.row(i)
    list[#list + 1] = r
    by_id[i] = r
  end
  local tb = task.now()
  t_gen = t_gen + (tb - ta)

  if use_ledger then
    -- check_many answers keyed by the key's string form, integers too
    local status = ledger.check_many(scope, by_id)
    local fresh, fresh_by_id = {}, {}
    for _, r in ipairs(list) do
      if status[tostring(r.id)] ~= "unchanged" then
        fresh[#fresh + 1] = r
        fresh_by_id[r.id] = r
      end
    end
    skipped = skipped + (#list - #fresh)
    list, by_id = fresh, fresh_by_id
    local tc = task.now()
    t_ledger = t_ledger + (tc - tb)
    tb = tc
  end

  if #list > 0 then
    local res = assert(db:upsert(tbl, list, opts))
    inserted = inserted + res.inserted
    updated = updated + res.updated
  end
  local tc = task.now()
  t_upsert = t_upsert + (tc - tb)

  if use_ledger and #list > 0 then
    ledger.record_many(scope, by_id, {origin = "bench"})
    t_ledger = t_ledger + (task.now() - tc)
  end
end
local seconds = task.now() - t0

return {
  side = use_ledger and "weir+ledger" or "weir",
  rows = n, batch = batch, inserted = inserted, updated = updated, skipped = skipped,
  seconds = seconds, rows_per_sec = n / seconds,
  gen_seconds = t_gen, ledger_seconds = t_ledger, upsert_seconds = t_upsert,
}
