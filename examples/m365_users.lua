-- m365_users.lua -- sync Microsoft 365 users with a Graph delta query.
--
--   weir run examples/m365_users.lua --set tenant=contoso.onmicrosoft.com \
--       --set client_id=APP-ID                    # secret: see below
--
-- A full delta round of /users, then an incremental round with the
-- deltaLink it returned: what was added, updated and removed since.  The
-- users live in memory here (a PostgreSQL sink comes later); a real job
-- would store the deltaLink and start the next run from it.
--
-- Params (--set key=value):
--   tenant, client_id        the app registration (required)
--   client_secret            or, better, the environment variable
--                            M365_CLIENT_SECRET (list it in WEIR_ENV_ALLOW):
--                            command lines are visible to other users
--   graph_url, token_url     default to Microsoft's; point them at a mock
--   select                   user properties to sync
--   demo_control_url         the Graph mock's /_control URL: between the two
--                            rounds, create 3 users, update 2, delete 2
--
-- Returns (printed as JSON by weir run) a summary of both rounds.

local graph = require "msgraph"
local http = require "weir.http"

local params = ...
local SAMPLES = 3

local function required(name)
  local v = params[name]
  if v == nil or v == "" then error("m365_users: missing param '" .. name .. "' (--set " .. name .. "=...)", 0) end
  return v
end

local client = graph.client{
  tenant = required("tenant"),
  client_id = required("client_id"),
  client_secret = params.client_secret or os.getenv("M365_CLIENT_SECRET")
    or error("m365_users: no client secret: set M365_CLIENT_SECRET (and WEIR_ENV_ALLOW) "
             .. "or --set client_secret=...", 0),
  base_url = params.graph_url,
  token_url = params.token_url,
}
local select = params.select or "id,displayName,givenName,surname,mail,userPrincipalName,jobTitle,officeLocation"

-- The synced copy: id -> user.
local users = {}

local function count(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end

-- Applies one delta round to `users`.  Graph does not say whether an item
-- is new or changed: that is whether we already had it.  After a resync
-- (the delta state expired) everything not sent again is gone.
local function apply_round(delta_link)
  local changes, sync = client:delta("/users/delta", delta_link, { query = { ["$select"] = select } })
  local stats = { added = 0, updated = 0, removed = 0, changed = {} }
  local seen
  for change in changes do
    if change.kind == "resync" then
      seen = {}
    elseif change.kind == "removed" then
      if users[change.id] then stats.removed = stats.removed + 1 end
      users[change.id] = nil
    else
      if seen then seen[change.id] = true end
      if users[change.id] then stats.updated = stats.updated + 1 else stats.added = stats.added + 1 end
      users[change.id] = change.item
      if #stats.changed < SAMPLES then stats.changed[#stats.changed + 1] = change.id end
    end
  end
  if seen then
    for id in pairs(users) do
      if not seen[id] then users[id] = nil; stats.removed = stats.removed + 1 end
    end
  end
  stats.pages, stats.resynced, stats.delta_link = sync.pages, sync.resynced, sync.delta_link
  -- sample rows as they were after this round
  stats.samples = {}
  for i, id in ipairs(stats.changed) do
    local u = users[id] or {}
    stats.samples[i] = { id = id, displayName = u.displayName, mail = u.mail, jobTitle = u.jobTitle }
  end
  return stats
end

local function report(name, s)
  print(string.format("%s: %d added, %d updated, %d removed in %d page(s)%s; %d users now",
    name, s.added, s.updated, s.removed, s.pages, s.resynced and " (full resync)" or "", count(users)))
  for _, r in ipairs(s.samples) do
    print(string.format("  %-36s  %-24s  %s", r.id, r.displayName or "", r.jobTitle or ""))
  end
end

-- Demo only: change the mock's directory so the second round has work.
local function demo_changes(control_url)
  local ids = {}
  for id in pairs(users) do ids[#ids + 1] = id end
  table.sort(ids)
  local res, err = http.request{ method = "POST", url = control_url .. "/users", json = {
    create = { { displayName = "Demo Newcomer 1", jobTitle = "Analyst" },
               { displayName = "Demo Newcomer 2", jobTitle = "Analyst" },
               { displayName = "Demo Newcomer 3", jobTitle = "Engineer" } },
    update = { { id = ids[1], jobTitle = "Promoted by the demo" },
               { id = ids[2], officeLocation = "Moved by the demo", jobTitle = "Relocated" } },
    delete = { ids[3], ids[4] },
  } }
  if not res or res.status ~= 200 then
    error("m365_users: demo control call failed: " .. (res and res.body or err.message), 0)
  end
  print("demo: created 3 users, updated 2, deleted 2 through the mock's control API")
end

local full = apply_round(nil)
report("full sync", full)
if params.demo_control_url then demo_changes(params.demo_control_url) end
local incremental = apply_round(full.delta_link)
report("incremental sync", incremental)

local function summary(s)
  return { added = s.added, updated = s.updated, removed = s.removed, pages = s.pages,
           resynced = s.resynced, samples = s.samples }
end

return {
  users = count(users),
  full = summary(full),
  incremental = summary(incremental),
  -- where the next run would start from
  has_delta_link = type(incremental.delta_link) == "string",
}
