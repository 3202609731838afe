--[[
pg_rows.lua -- the deterministic rows of the PostgreSQL upsert benchmark,
shared by the weir side (weir_upsert.lua) and the CSV writer for the
psql baseline (gen_csv.lua, run by plain lua5.4), so both load the same
data.

Row i has 10 columns: id bigint (the key), name, email, city, status
(text), qty (int), score (float8), active (bool), created_at
(timestamptz) and payload (json).  Values come from a 64-bit LCG
reseeded per id, so they do not depend on math.random or on the order
rows are made in.
]]
local M = {}

M.columns = {"id", "name", "email", "city", "status", "qty", "score",
             "active", "created_at", "payload"}

M.create_sql = [[
  id bigint PRIMARY KEY, name text NOT NULL, email text NOT NULL,
  city text NOT NULL, status text NOT NULL, qty integer NOT NULL,
  score double precision NOT NULL, active boolean NOT NULL,
  created_at timestamptz NOT NULL, payload json NOT NULL]]

local FIRST = {"Ada", "Linus", "Grace", "Ken", "Barbara", "Dennis", "Margaret", "Guido", "José", "Zoë"}
local LAST = {"Lovelace", "Torvalds", "Hopper", "Thompson", "Liskov", "Ritchie", "Hamilton", "van Rossum"}
local CITY = {"Lisbon", "Oslo", "Kraków", "São Paulo", "Osaka", "Nairobi", "Austin, TX", "Zürich"}
local STATUS = {"active", "pending", "suspended", "closed"}
local TAGS = {"alpha", "beta", "gamma", "delta", "eps"}
local EPOCH = 1704067200            -- 2024-01-01T00:00:00Z

local function lcg(x) return x * 6364136223846793005 + 1442695040888963407 end

local function pick(list, x) return list[(x >> 33) % #list + 1] end

-- M.row(i) -> record keyed by column name (payload is a Lua table).
function M.row(i)
  local x = lcg(i)
  local first = pick(FIRST, x); x = lcg(x)
  local last = pick(LAST, x); x = lcg(x)
  local city = pick(CITY, x); x = lcg(x)
  local status = pick(STATUS, x); x = lcg(x)
  local qty = (x >> 40) % 10000; x = lcg(x)
  local score = ((x >> 20) % 10000000) / 100; x = lcg(x)
  local ntags = (x >> 50) % 3 + 1
  local tags = {}
  for t = 1, ntags do x = lcg(x); tags[t] = pick(TAGS, x) end
  return {
    id = i,
    name = first .. " " .. last,
    email = string.lower(first:sub(1, 1)) .. i .. "@example.com",
    city = city,
    status = status,
    qty = qty,
    score = score,
    active = (x >> 45) % 2 == 0,
    created_at = os.date("!%Y-%m-%dT%H:%M:%SZ", EPOCH + i * 37),
    payload = {seq = i, tags = tags, vip = qty > 9000},
  }
end

local function csv_text(s)
  if s:find('[,"\n]') then return '"' .. s:gsub('"', '""') .. '"' end
  return s
end

local function json_string_list(list)
  local out = {}
  for k, v in ipairs(list) do out[k] = '"' .. v .. '"' end
  return "[" .. table.concat(out, ",") .. "]"
end

-- M.csv_line(i) -> row i as one CSV line (no newline), columns in
-- M.columns order; the payload is written as JSON text.
function M.csv_line(i)
  local r = M.row(i)
  local p = r.payload
  local payload = string.format('{"seq":%d,"tags":%s,"vip":%s}', p.seq,
                                json_string_list(p.tags), tostring(p.vip))
  return table.concat({
    r.id, csv_text(r.name), csv_text(r.email), csv_text(r.city), r.status,
    r.qty, string.format("%.17g", r.score), tostring(r.active), r.created_at,
    csv_text(payload),
  }, ",")
end

return M
