--[[
transform_common.lua -- the code both sides of the transform benchmark
share: a deterministic generator of user-like NDJSON records, the map
function, and the timed decode -> map -> encode loop.

Both weir (weir_transform.lua) and bare lua5.4 + lua-cjson
(lua_transform.lua) run exactly this file; they differ only in the
decode/encode/null/clock/pause values they pass to M.run.  So the
ratio measures the JSON codec and the runtime, not two different
transforms.

Only the decode -> map -> encode loop is timed; generating a batch of
input strings is not.  Records are generated in batches (default
10,000) so that peak RSS reflects the transform, not 1M strings held
at once.

The checksum must match across sides: lua-cjson 2.1.0 decodes every
number as a float and weir.json keeps integers, so it is built from
numbers that survive both (count, sums of integer fields, encoded byte
count: the data avoids '/', control characters and floats without an
exact short binary form, so both encoders write the same bytes up to
key order).
]]

local M = {}

local format, concat, lower = string.format, table.concat, string.lower

-- A 64-bit LCG (Knuth's MMIX constants).  Lua 5.4 integer arithmetic
-- wraps, so this is deterministic on every build; math.random is not
-- used because its seeding is the host's business.
local rng_state = 0

local function rng_seed(seed)
  rng_state = seed
end

local function rng(n)             -- 1..n
  rng_state = rng_state * 6364136223846793005 + 1442695040888963407
  return ((rng_state >> 33) % n) + 1
end

local function rng_bits(bits)     -- 0 .. 2^bits - 1, bits <= 31
  rng_state = rng_state * 6364136223846793005 + 1442695040888963407
  return (rng_state >> 33) & ((1 << bits) - 1)
end

-- { display, ascii login part }
local FIRST = {
  {"Ada", "ada"}, {"Alan", "alan"}, {"Grace", "grace"}, {"Linus", "linus"},
  {"Margaret", "margaret"}, {"Dennis", "dennis"}, {"Barbara", "barbara"},
  {"Ken", "ken"}, {"Frances", "frances"}, {"John", "john"},
  {"Radia", "radia"}, {"Edsger", "edsger"}, {"Hedy", "hedy"},
  {"José", "jose"}, {"Zoë", "zoe"}, {"Björn", "bjorn"}, {"Chloé", "chloe"},
  {"Mateo", "mateo"}, {"Søren", "soren"}, {"Amélie", "amelie"},
}
local LAST = {
  "Lovelace", "Turing", "Hopper", "Torvalds", "Hamilton", "Ritchie",
  "Liskov", "Thompson", "Allen", "McCarthy", "Perlman", "Dijkstra",
  "Lamarr", "Berners-Lee", "Wilson", "Knuth", "Goldberg", "Kay",
  "Engelbart", "Nygaard",
}
local CITIES = {
  {"Lyon", "FR", 69001}, {"Berlin", "DE", 10115}, {"Porto", "PT", 4000},
  {"Austin", "US", 73301}, {"Kyoto", "JP", 60000}, {"Oslo", "NO", 150},
  {"Montréal", "CA", 10000}, {"Zürich", "CH", 8001}, {"Leeds", "GB", 10000},
  {"Madrid", "ES", 28001}, {"Turin", "IT", 10121}, {"Gdańsk", "PL", 80001},
}
local STREETS = {
  "Main St", "Rue de la Paix", "Baker Street", "Kurfürstendamm",
  "Avenida da Liberdade", "Elm Street", "Calle Mayor", "Via Roma",
  "Karl Johans gate", "Bahnhofstrasse",
}
local DOMAINS = {"example.com", "example.org", "mail.example.net",
                 "corp.example.com"}
local TAGS = {"admin", "beta", "billing", "support", "vip", "trial",
              "churn-risk", "newsletter", "api", "mobile"}
-- Scores with an exact short binary form (x.0 is left out: cjson writes
-- 87.0 as "87", yajl as "87.0").
local FRACTIONS = {".25", ".5", ".75"}

local RECORD_FMT = '{"id":%d,"uuid":"%08x-%04x-%04x-%04x-%04x%08x",' ..
  '"first_name":"%s","last_name":"%s","email":"%s","age":%d,' ..
  '"active":%s,"balance_cents":%d,"score":%d%s,"phone":%s,' ..
  '"created_at":"%04d-%02d-%02dT%02d:%02d:%02dZ",' ..
  '"address":{"street":"%d %s","city":"%s","zip":"%05d","country":"%s"},' ..
  '"tags":[%s]}'

local tag_parts = {}

-- The JSON text of record number id (1-based).  Deterministic in id:
-- the generator is reseeded per record so batches can be made in any
-- order and both sides agree.
function M.record(id)
  rng_seed(id * 2654435761 + 12345)
  local first = FIRST[rng(#FIRST)]
  local last = LAST[rng(#LAST)]
  local city = CITIES[rng(#CITIES)]
  local email = format("%s.%s%d@%s", first[2], lower(last), id % 1000,
                       DOMAINS[rng(#DOMAINS)])
  local phone = "null"
  if rng(3) ~= 1 then
    phone = format('"+%d %03d %04d %04d"', rng(98), rng(999), rng(9999),
                   rng(9999))
  end
  local ntags = rng(3)
  for i = 1, 3 do tag_parts[i] = nil end
  for i = 1, ntags do tag_parts[i] = '"' .. TAGS[rng(#TAGS)] .. '"' end
  return format(RECORD_FMT,
    id, rng_bits(31), rng_bits(16), rng_bits(16), rng_bits(16),
    rng_bits(16), rng_bits(31),
    first[1], last, email, 16 + rng(70),
    rng(4) == 1 and "false" or "true", rng(5000000) - 1000,
    rng(100) - 1, FRACTIONS[rng(3)], phone,
    2014 + rng(11), rng(12), rng(28), rng(24) - 1, rng(60) - 1, rng(60) - 1,
    rng(250), STREETS[rng(#STREETS)], city[1], city[3] + rng(50), city[2],
    concat(tag_parts, ","))
end

-- Fills batch[1..count] with records first .. first + count - 1.
function M.fill(batch, first, count)
  for i = 1, count do batch[i] = M.record(first + i - 1) end
  for i = count + 1, #batch do batch[i] = nil end
end

-- The transform: rename (id -> user_id, address -> location), derive
-- (full_name, email_domain, is_adult, tag_count, balance string), drop
-- (uuid, created_at, street, zip, first/last name).  Keeps the decoded
-- tags array as is, so each codec's array marking survives.
function M.map(r)
  local addr = r.address
  local email = r.email
  local cents = r.balance_cents
  return {
    user_id = r.id,
    full_name = r.first_name .. " " .. r.last_name,
    email = lower(email),
    email_domain = email:match("@(.+)$"),
    age = r.age,
    is_adult = r.age >= 21,
    active = r.active,
    balance = format("%s%d.%02d", cents < 0 and "-" or "",
                     math.abs(cents) // 100, math.abs(cents) % 100),
    score = r.score,
    phone = r.phone,
    location = { city = addr.city, country = addr.country },
    tags = r.tags,
    tag_count = #r.tags,
  }
end

--[[ Runs the benchmark.  opts:
  n, batch           records in total, records per generated batch
  decode(s) -> t     the side's JSON decoder
  encode(t) -> s     the side's JSON encoder
  clock() -> secs    the side's CPU/monotonic clock for the timed part
  pause()            optional, called between batches (untimed): weir
                     yields there so a long transform stays cooperative
Returns a flat table of results. ]]
function M.run(opts)
  local n, batch_size = opts.n, opts.batch
  local decode, encode, clock, map = opts.decode, opts.encode, opts.clock,
                                     M.map
  local batch = {}
  local elapsed, count, bytes, sum_id, sum_age, nulls = 0.0, 0, 0, 0, 0, 0
  local null = opts.null
  local first = 1
  while first <= n do
    local c = math.min(batch_size, n - first + 1)
    M.fill(batch, first, c)
    local t0 = clock()
    for i = 1, c do
      local out = map(decode(batch[i]))
      local s = encode(out)
      bytes = bytes + #s
      sum_id = sum_id + out.user_id
      sum_age = sum_age + out.age
      if out.phone == null then nulls = nulls + 1 end
      count = count + 1
    end
    elapsed = elapsed + (clock() - t0)
    first = first + c
    if opts.pause then opts.pause() end
  end
  -- Sums are floats on the cjson side: print them as integers so the
  -- two sides' checksums compare as text.
  local checksum = format("%d:%.0f:%.0f:%d:%d", count, sum_id, sum_age,
                          nulls, bytes)
  return {
    records = count,
    seconds = elapsed,
    records_per_sec = count / elapsed,
    encoded_bytes = bytes,
    checksum = checksum,
  }
end

return M
