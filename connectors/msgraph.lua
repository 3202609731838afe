-- msgraph.lua -- Microsoft Graph connector: app-only (client credentials)
-- auth, retries that honour throttling, paging, delta sync and $batch.
--
--   local graph = require "msgraph"
--   local client = graph.client{ tenant = ..., client_id = ..., client_secret = ... }
--   local me, err = client:request("GET", "/users/" .. id)
--   for user in client:pages("/users", { query = { ["$top"] = 999 } }) do ... end
--
-- Error convention (the model for every connector):
--   * functions that return data return `value` on success and `nil, err`
--     on failure; err is a table {kind, message, retryable, ...} whose
--     tostring() is its message.  Nothing is ever dropped silently.
--   * iterators (pages, delta) cannot return nil without ending the loop,
--     so they RAISE that same err table; list() and delta_all() are the
--     nil, err forms of them.
--   * bad arguments and bad configuration (programming errors) raise.
--
-- docs/connectors.md documents every option and field.  Only weir.http,
-- weir.json, weir.task and weir.log are used: this is plain Lua on top of
-- the engine, and the pattern other connectors follow.

local http = require "weir.http"
local json = require "weir.json"
local task = require "weir.task"
local log = require "weir.log"

local M = {}

M.defaults = {
  base_url = "https://graph.microsoft.com/v1.0",
  token_url = "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token",
  scope = "https://graph.microsoft.com/.default",
  max_retries = 5,        -- retries after the first attempt
  timeout = 30,           -- seconds per HTTP exchange
  backoff_base = 0.5,     -- seconds: full-jitter backoff starts here...
  backoff_max = 30,       -- ...and never exceeds this
  max_retry_after = 300,  -- a longer Retry-After fails instead of waiting
  refresh_margin = 60,    -- renew a token this long before it expires
  batch_size = 20,        -- Graph's limit per $batch call
}

-- Statuses Graph documents as transient: throttled, unavailable, gateway
-- timeout.  Everything else is the caller's to handle.
local RETRY_STATUS = { [429] = true, [503] = true, [504] = true }

-- A transport failure may hide a request the server did process, so only
-- methods that are safe to repeat are resent after one (opts.idempotent
-- overrides, e.g. for a $batch of GETs).
local IDEMPOTENT = { GET = true, HEAD = true, OPTIONS = true, PUT = true, DELETE = true }

local CLIENT_FIELDS = {
  tenant = "string", client_id = "string", client_secret = "string",
  base_url = "string", token_url = "string", scope = "string",
  max_retries = "number", timeout = "number", backoff_base = "number",
  backoff_max = "number", max_retry_after = "number", refresh_margin = "number",
  batch_size = "number", headers = "table", token_provider = "function",
}

---------------------------------------------------------------------------
-- Errors
---------------------------------------------------------------------------

local Error = {}
Error.__index = Error
Error.__tostring = function(e) return e.message end

local function new_error(fields)
  if fields.retryable == nil then fields.retryable = false end
  return setmetatable(fields, Error)
end

function M.is_error(v)
  return getmetatable(v) == Error
end

-- Graph error bodies: {"error":{"code","message","innerError":{"request-id"}}}.
local function graph_error_fields(body)
  local ok, doc = pcall(json.decode, body or "")
  if not ok or type(doc) ~= "table" or type(doc.error) ~= "table" then return nil end
  local e = doc.error
  local inner = type(e.innerError) == "table" and e.innerError or {}
  return {
    code = type(e.code) == "string" and e.code or nil,
    message = type(e.message) == "string" and e.message or nil,
    request_id = type(inner["request-id"]) == "string" and inner["request-id"] or nil,
  }
end

local function http_error(method, url, res, attempts, why)
  local g = graph_error_fields(res.body) or {}
  local msg = string.format("msgraph: %s %s: HTTP %d", method, url, res.status)
  if g.code then msg = msg .. " " .. g.code end
  if g.message then msg = msg .. ": " .. g.message end
  if why then msg = msg .. " (" .. why .. ")" end
  return new_error{
    kind = "http", status = res.status, code = g.code, message = msg,
    retryable = RETRY_STATUS[res.status] or false, request_id = g.request_id,
    method = method, url = url, attempts = attempts,
    location = res.headers["location"],
  }
end

local function transport_error(method, url, err, attempts, why)
  local msg = string.format("msgraph: %s %s: %s (%s)", method, url, err.message, err.kind)
  if why then msg = msg .. " (" .. why .. ")" end
  return new_error{
    kind = err.kind, message = msg, retryable = err.retryable,
    method = method, url = url, attempts = attempts,
  }
end

---------------------------------------------------------------------------
-- Small helpers
---------------------------------------------------------------------------

-- application/x-www-form-urlencoded: unreserved bytes as is, the rest %XX.
local function form_escape(s)
  return (s:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end))
end

local function form_encode(fields)
  local keys, parts = {}, {}
  for k in pairs(fields) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do parts[#parts + 1] = form_escape(k) .. "=" .. form_escape(fields[k]) end
  return table.concat(parts, "&")
end

local function header(headers, name)
  if type(headers) ~= "table" then return nil end
  name = name:lower()
  for k, v in pairs(headers) do
    if type(k) == "string" and k:lower() == name then return v end
  end
  return nil
end

local MONTHS = { Jan = 1, Feb = 2, Mar = 3, Apr = 4, May = 5, Jun = 6,
                 Jul = 7, Aug = 8, Sep = 9, Oct = 10, Nov = 11, Dec = 12 }

-- Days since 1970-01-01 of a proleptic Gregorian date (the classic
-- era-based days-from-civil formula): no os.time(), which is local time.
local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = (y >= 0 and y or y - 399) // 400
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = (153 * mp + 2) // 5 + d - 1
  local doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
  return era * 146097 + doe - 719468
end

-- IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT") -> Unix seconds, or nil.
function M.http_date(s)
  if type(s) ~= "string" then return nil end
  local d, mon, y, hh, mm, ss =
    s:match("^%s*%a%a%a, (%d%d?) (%a%a%a) (%d%d%d%d) (%d%d):(%d%d):(%d%d) GMT%s*$")
  local m = MONTHS[mon or ""]
  if not m then return nil end
  return days_from_civil(tonumber(y), m, tonumber(d)) * 86400
    + tonumber(hh) * 3600 + tonumber(mm) * 60 + tonumber(ss)
end

-- Retry-After -> seconds to wait, or nil when absent / unreadable.  The
-- value is delay-seconds (Graph sends fractions: "2.128") or an HTTP-date,
-- measured against the response's own Date header when there is one, so
-- a skewed local clock does not matter.
function M.retry_after_seconds(value, date_header, now_epoch)
  if type(value) ~= "string" then return nil end
  value = value:match("^%s*(.-)%s*$")
  if value:match("^%d+%.?%d*$") then return tonumber(value) end
  local at = M.http_date(value)
  if not at then return nil end
  local now = M.http_date(date_header) or now_epoch or os.time()
  return math.max(0, at - now)
end

-- task.sleep may wake a little early against task.now() (the event
-- loop's timers run on a cached clock), and "honour Retry-After" means
-- never sooner: sleep until the deadline has really passed.
local function sleep_until(deadline)
  while true do
    local left = deadline - task.now()
    if left <= 0 then return end
    task.sleep(left)
  end
end

local function origin(url)
  local o = url:match("^(https?://[^/?#]+)")
  return o and o:lower()
end

---------------------------------------------------------------------------
-- The client
---------------------------------------------------------------------------

local Client = {}
Client.__index = Client

local function check_config(cfg)
  if type(cfg) ~= "table" then error("msgraph.client: expected a table of options", 3) end
  for k, v in pairs(cfg) do
    local want = CLIENT_FIELDS[k]
    if not want then error("msgraph.client: unknown option '" .. tostring(k) .. "'", 3) end
    if type(v) ~= want then
      error(string.format("msgraph.client: option '%s' must be a %s (got %s)", k, want, type(v)), 3)
    end
  end
  local need = cfg.token_provider and { "tenant" } or { "tenant", "client_id", "client_secret" }
  for _, k in ipairs(need) do
    if not cfg[k] or cfg[k] == "" then error("msgraph.client: option '" .. k .. "' is required", 3) end
  end
end

-- graph.client(options) -> client.  Raises on bad options.
function M.client(cfg)
  check_config(cfg)
  local d = M.defaults
  local self = setmetatable({}, Client)
  self.tenant = cfg.tenant
  self.client_id = cfg.client_id
  self.base_url = (cfg.base_url or d.base_url):gsub("/+$", "")
  self.token_url = (cfg.token_url or d.token_url):gsub("{tenant}", function() return cfg.tenant end)
  self.scope = cfg.scope or d.scope
  self.max_retries = cfg.max_retries or d.max_retries
  self.timeout = cfg.timeout or d.timeout
  self.backoff_base = cfg.backoff_base or d.backoff_base
  self.backoff_max = cfg.backoff_max or d.backoff_max
  self.max_retry_after = cfg.max_retry_after or d.max_retry_after
  self.refresh_margin = cfg.refresh_margin or d.refresh_margin
  self.batch_size = math.max(1, math.min(math.floor(cfg.batch_size or d.batch_size), 20))
  self.headers = cfg.headers or {}
  self.token_provider = cfg.token_provider
  self.origin = origin(self.base_url)
  if not self.origin then error("msgraph.client: base_url must be an http(s) URL", 2) end
  -- The secret lives in a closure, not in a field: dumping the client
  -- (log, json.encode, a spec failure) cannot show it.  log.secret makes
  -- the engine redact it from every log line and error it prints.
  local secret = cfg.client_secret
  if secret and #secret >= 4 then log.secret(secret) end
  self.secret = function() return secret end
  return self
end

---------------------------------------------------------------------------
-- Sending with retries
---------------------------------------------------------------------------

function Client:backoff(attempt)
  return math.random() * math.min(self.backoff_max, self.backoff_base * 2 ^ attempt)
end

-- Sends req until it gets a final answer.  budget = {attempt, max_retries,
-- idempotent} is shared by every call for one logical request, so token
-- refreshes cannot reset the bound.  Returns res (any status), or nil,
-- err for a transport failure; the reason retries stopped, if they did,
-- is the third value.
function Client:send(req, budget)
  while true do
    local res, err = http.request(req)
    local wait
    if res then
      if not RETRY_STATUS[res.status] then return res end
      wait = M.retry_after_seconds(res.headers["retry-after"], res.headers["date"])
    elseif not (err.retryable and budget.idempotent) then
      return nil, err
    end
    wait = wait or self:backoff(budget.attempt)
    if budget.attempt >= budget.max_retries then
      return res, err, string.format("gave up after %d attempts", budget.attempt + 1)
    end
    if wait > self.max_retry_after then
      return res, err, string.format("Retry-After %.3g s exceeds max_retry_after %g s",
                                     wait, self.max_retry_after)
    end
    budget.attempt = budget.attempt + 1
    log.warn("msgraph: retrying", {
      method = req.method, url = req.url, status = res and res.status,
      error = err and err.kind, wait = wait, attempt = budget.attempt,
    })
    sleep_until(task.now() + wait)
  end
end

---------------------------------------------------------------------------
-- Tokens
---------------------------------------------------------------------------

-- POSTs the client-credentials grant.  Returns token, expires_in | nil, err.
function Client:fetch_token()
  local req = {
    method = "POST", url = self.token_url, timeout = self.timeout,
    headers = { ["Content-Type"] = "application/x-www-form-urlencoded", Accept = "application/json" },
    body = form_encode{ client_id = self.client_id, client_secret = self.secret(),
                        scope = self.scope, grant_type = "client_credentials" },
  }
  -- Asking for a token twice is harmless: retry transport failures too.
  local budget = { attempt = 0, max_retries = self.max_retries, idempotent = true }
  local res, err, why = self:send(req, budget)
  local who = string.format("client_id '%s' in tenant '%s'", self.client_id, self.tenant)
  if not res then
    local e = transport_error("POST", self.token_url, err, budget.attempt + 1, why)
    e.message = "msgraph: token request for " .. who .. " failed: " .. e.message
    return nil, e
  end
  local ok, doc = pcall(json.decode, res.body)
  if res.status == 200 and ok and type(doc) == "table" and type(doc.access_token) == "string" then
    return doc.access_token, tonumber(doc.expires_in) or 3599
  end
  -- Identity errors: {"error":"invalid_client","error_description":"AADSTS...: ..."}
  local code = ok and type(doc) == "table" and type(doc.error) == "string" and doc.error or nil
  local desc = ok and type(doc) == "table" and type(doc.error_description) == "string"
    and doc.error_description or nil
  if desc then desc = desc:match("^(.-)%s*Trace ID:") or desc end
  return nil, new_error{
    kind = "auth", status = res.status, code = code, tenant = self.tenant,
    client_id = self.client_id, url = self.token_url, attempts = budget.attempt + 1,
    retryable = RETRY_STATUS[res.status] or false,
    message = string.format("msgraph: token request for %s was refused: HTTP %d%s%s%s", who,
      res.status, code and (" " .. code) or "", desc and (": " .. desc) or "",
      why and (" (" .. why .. ")") or ""),
  }
end

-- Obtains and caches a token.  One fetch at a time: concurrent callers
-- (tasks sharing the client) wait for the fetch in flight instead of
-- each asking for their own token.
function Client:token()
  if self.cached_token and task.now() < self.refresh_at then return self.cached_token end
  local fetch = self.token_task
  if not fetch then
    fetch = task.spawn(function()
      local token, expires_in
      if self.token_provider then
        token, expires_in = self.token_provider()
      else
        token, expires_in = self:fetch_token()
      end
      if not token then return nil, expires_in end
      expires_in = tonumber(expires_in) or 3599
      if #token >= 4 then log.secret(token) end
      self.cached_token = token
      self.refresh_at = task.now() + expires_in - math.min(self.refresh_margin, expires_in / 2)
      log.info("msgraph: access token obtained", { tenant = self.tenant, expires_in = expires_in })
      return token
    end)
    self.token_task = fetch
  end
  local ok, token, err = task.wait(fetch)
  if self.token_task == fetch then self.token_task = nil end
  if not ok then error(token, 0) end   -- a bug in the fetch: let it show
  return token, err
end

-- Forgets `token` if it is still the cached one (another task may have
-- replaced it already).
function Client:drop_token(token)
  if self.cached_token == token then self.cached_token = nil end
end

---------------------------------------------------------------------------
-- Requests
---------------------------------------------------------------------------

-- Path ("/users") -> base_url .. path; absolute URLs (nextLink, deltaLink,
-- Location) are used unchanged but only on base_url's origin, so the
-- bearer token never goes to another host.
function Client:resolve(target)
  if type(target) ~= "string" or target == "" then
    error("msgraph: expected a path or URL string (got " .. type(target) .. ")", 3)
  end
  if target:match("^%a[%w+.-]*://") then
    if origin(target) ~= self.origin then
      return nil, new_error{ kind = "origin", url = target, message =
        "msgraph: refusing to send the access token to " .. target ..
        " (not on base_url's origin " .. self.origin .. ")" }
    end
    return target
  end
  if target:sub(1, 1) ~= "/" then target = "/" .. target end
  return self.base_url .. target
end

local function decode_success(method, url, res)
  local ctype = res.headers["content-type"] or ""
  if res.body == "" or not ctype:find("json", 1, true) then return res.body end
  local ok, doc = pcall(json.decode, res.body)
  if not ok then
    return nil, new_error{ kind = "decode", method = method, url = url, status = res.status,
      message = string.format("msgraph: %s %s: response is not valid JSON: %s", method, url, doc) }
  end
  return doc
end

-- client:request(method, path_or_url, opts) -> body, res | nil, err
--   opts: query, headers, json | body, timeout, max_retries, idempotent.
--   body is the decoded JSON document (or the raw body string when the
--   response is not JSON, "" when empty); res is the http response.
function Client:request(method, target, opts)
  opts = opts or {}
  method = string.upper(method)
  local url, uerr = self:resolve(target)
  if not url then return nil, uerr end
  local idempotent = opts.idempotent
  if idempotent == nil then idempotent = IDEMPOTENT[method] or false end
  local budget = { attempt = 0, max_retries = opts.max_retries or self.max_retries,
                   idempotent = idempotent }
  local refreshed = false
  while true do
    local token, terr = self:token()
    if not token then return nil, terr end
    local headers = { Accept = "application/json" }
    for _, extra in ipairs({ self.headers, opts.headers or {} }) do
      for k, v in pairs(extra) do
        if k:lower() ~= "authorization" then headers[k] = v end  -- ours wins
      end
    end
    headers.Authorization = "Bearer " .. token
    local res, err, why = self:send({
      method = method, url = url, query = opts.query, headers = headers,
      json = opts.json, body = opts.body, timeout = opts.timeout or self.timeout,
    }, budget)
    if not res then return nil, transport_error(method, url, err, budget.attempt + 1, why) end
    if res.status >= 200 and res.status < 300 then
      local body, derr = decode_success(method, url, res)
      if body == nil then return nil, derr end
      return body, res
    end
    -- An expired or revoked token: fetch a new one and try once more.
    if res.status ~= 401 or refreshed then
      return nil, http_error(method, url, res, budget.attempt + 1, why)
    end
    refreshed = true
    self:drop_token(token)
    log.info("msgraph: 401 from Graph, refreshing the access token", { url = url })
  end
end

function Client:get(target, opts)
  return self:request("GET", target, opts)
end

---------------------------------------------------------------------------
-- Paging
---------------------------------------------------------------------------

local function page_items(method, url, body)
  if type(body) ~= "table" or type(body.value) ~= "table" then
    error(new_error{ kind = "protocol", url = url, message = string.format(
      "msgraph: %s %s: expected a collection ({\"value\": [...]})", method, url) }, 0)
  end
  return body.value
end

-- for item in client:pages(path, opts) do ... end
-- Follows @odata.nextLink unchanged (opts.query goes on the first request
-- only; opts.headers on every one).  Raises err on failure.
function Client:pages(path, opts)
  opts = opts or {}
  local url, query = path, opts.query
  local items, i = {}, 0
  return function()
    while true do
      i = i + 1
      if i <= #items then return items[i] end
      if not url then return nil end
      local body, err = self:request("GET", url, { query = query, headers = opts.headers })
      if not body then error(err, 0) end
      items, i, query = page_items("GET", url, body), 0, nil
      url = body["@odata.nextLink"]
    end
  end
end

-- Runs fn() and turns a raised connector error into nil, err.
local function catch(fn)
  local ok, result = pcall(fn)
  if ok then return result end
  if M.is_error(result) then return nil, result end
  error(result, 0)
end

-- client:list(path, opts) -> items | nil, err   (every page collected)
function Client:list(path, opts)
  return catch(function()
    local all = {}
    for item in self:pages(path, opts) do all[#all + 1] = item end
    return all
  end)
end

---------------------------------------------------------------------------
-- Delta
---------------------------------------------------------------------------

local RESYNC_CODES = { syncStateNotFound = true, resyncRequired = true }

local function is_resync(err)
  return err.kind == "http" and (err.status == 410 or RESYNC_CODES[err.code] == true)
end

local function to_change(item)
  local removed = item["@removed"]
  if type(removed) == "table" then
    return { kind = "removed", id = item.id, reason = removed.reason or "deleted", item = item }
  end
  return { kind = "upsert", id = item.id, item = item }
end

-- local changes, sync = client:delta(path, delta_link, opts)
-- for change in changes do ... end; save(sync.delta_link)
--
-- Without delta_link: a full round from path (+ opts.query).  With one:
-- only what changed since.  Each change is {kind = "upsert" | "removed" |
-- "resync", id, item, reason}.  When Graph says the state is gone (410,
-- syncStateNotFound, resyncRequired) the round restarts once from the
-- Location URL (else path): a {kind = "resync"} change comes first, then
-- the full set, and sync.resynced is true: the caller should drop what
-- it has not seen again.  Raises err on failure.
function Client:delta(path, delta_link, opts)
  opts = opts or {}
  local sync = { delta_link = nil, resynced = false, pages = 0, count = 0 }
  local url = delta_link or path
  local query = not delta_link and opts.query or nil
  local items, i, finished = {}, 0, false
  local function next_change()
    while true do
      i = i + 1
      if i <= #items then
        sync.count = sync.count + 1
        return to_change(items[i])
      end
      if finished then return nil end
      local body, err = self:request("GET", url, { query = query, headers = opts.headers })
      if not body then
        if not is_resync(err) or sync.resynced then error(err, 0) end
        sync.resynced = true
        log.warn("msgraph: delta state expired, full resync", { url = url, code = err.code })
        url, query = err.location or path, not err.location and opts.query or nil
        items, i = {}, 0
        return { kind = "resync", reason = err.code or "gone" }
      end
      items, i, query = page_items("GET", url, body), 0, nil
      sync.pages = sync.pages + 1
      local next_link, new_delta = body["@odata.nextLink"], body["@odata.deltaLink"]
      if type(next_link) == "string" then
        url = next_link
      elseif type(new_delta) == "string" then
        sync.delta_link, finished = new_delta, true
      else
        error(new_error{ kind = "protocol", url = url, message = "msgraph: GET " .. url ..
          ": delta page has neither @odata.nextLink nor @odata.deltaLink" }, 0)
      end
    end
  end
  return next_change, sync
end

-- client:delta_all(path, delta_link, opts) -> sync | nil, err
-- sync = {changes = {...}, delta_link, resynced, pages, count}
function Client:delta_all(path, delta_link, opts)
  return catch(function()
    local changes, sync = self:delta(path, delta_link, opts)
    local list = {}
    for change in changes do list[#list + 1] = change end
    sync.changes = list
    return sync
  end)
end

---------------------------------------------------------------------------
-- JSON batching
---------------------------------------------------------------------------

-- Checks and normalises the requests (ids as strings, relative URLs).
-- Raises on misuse: duplicate ids, dependsOn outside its chunk.
function Client:batch_items(requests)
  if type(requests) ~= "table" then error("msgraph.batch: expected an array of requests", 3) end
  local items, seen = {}, {}
  for n, r in ipairs(requests) do
    if type(r) ~= "table" or type(r.url) ~= "string" then
      error("msgraph.batch: request #" .. n .. " needs a 'url' string", 3)
    end
    local id = tostring(r.id or n)
    if seen[id] then error("msgraph.batch: duplicate request id '" .. id .. "'", 3) end
    seen[id] = n
    local url = r.url
    if url:sub(1, #self.base_url) == self.base_url then url = url:sub(#self.base_url + 1) end
    if url:sub(1, 1) ~= "/" then url = "/" .. url end
    local headers = r.headers
    if r.body ~= nil and not header(headers, "content-type") then
      headers = { ["Content-Type"] = "application/json" }
      for k, v in pairs(r.headers or {}) do headers[k] = v end
    end
    items[n] = { id = id, method = string.upper(r.method or "GET"), url = url,
                 headers = headers, body = r.body, dependsOn = r.dependsOn }
  end
  for n, item in ipairs(items) do
    local chunk = (n - 1) // self.batch_size
    for _, dep in ipairs(item.dependsOn or {}) do
      local at = seen[tostring(dep)]
      if not at or (at - 1) // self.batch_size ~= chunk then
        error(string.format("msgraph.batch: request '%s' depends on '%s', which is not in its "
          .. "chunk of %d", item.id, tostring(dep), self.batch_size), 3)
      end
    end
  end
  return items
end

-- Items to send again: throttled ones, and those that failed (424) only
-- because something they depend on was throttled.
local function retry_set(items, results)
  local retry, list = {}, {}
  for _, item in ipairs(items) do
    if RETRY_STATUS[results[item.id].status] then retry[item.id] = true end
  end
  local grew = true
  while grew do
    grew = false
    for _, item in ipairs(items) do
      if not retry[item.id] and results[item.id].status == 424 then
        for _, dep in ipairs(item.dependsOn or {}) do
          if retry[tostring(dep)] then retry[item.id], grew = true, true end
        end
      end
    end
  end
  for _, item in ipairs(items) do
    if retry[item.id] then
      local again = {}
      for k, v in pairs(item) do again[k] = v end
      -- dependencies that already succeeded are not resent
      local deps = {}
      for _, dep in ipairs(item.dependsOn or {}) do
        if retry[tostring(dep)] then deps[#deps + 1] = tostring(dep) end
      end
      again.dependsOn = #deps > 0 and deps or nil
      list[#list + 1] = again
    end
  end
  return list
end

-- One chunk (<= 20): POST /$batch, then resend throttled items, waiting
-- the longest Retry-After among them.  Fills results[id].
function Client:batch_chunk(items, results, opts)
  local all_safe = true
  for _, item in ipairs(items) do all_safe = all_safe and IDEMPOTENT[item.method] == true end
  local round = 0
  while true do
    local body, err = self:request("POST", "/$batch", {
      json = { requests = items }, idempotent = all_safe, timeout = opts.timeout,
    })
    if not body then return nil, err end
    if type(body) ~= "table" or type(body.responses) ~= "table" then
      return nil, new_error{ kind = "protocol", message = "msgraph: $batch answer has no 'responses' array" }
    end
    for _, r in ipairs(body.responses) do results[tostring(r.id)] = r end
    for _, item in ipairs(items) do
      if not results[item.id] then
        return nil, new_error{ kind = "protocol", message = "msgraph: $batch answer lacks request '" .. item.id .. "'" }
      end
    end
    local again = retry_set(items, results)
    if #again == 0 or round >= self.max_retries then return true end
    local wait = 0
    for _, item in ipairs(again) do
      local r = results[item.id]
      local s = M.retry_after_seconds(header(r.headers, "retry-after"), header(r.headers, "date"))
      wait = math.max(wait, s or (r.status == 424 and 0) or self:backoff(round))
    end
    if wait > self.max_retry_after then return true end
    round = round + 1
    log.warn("msgraph: retrying throttled $batch items", { items = #again, wait = wait, round = round })
    sleep_until(task.now() + wait)
    items = again
  end
end

-- client:batch(requests, opts) -> responses | nil, err
-- requests: array of {id?, method = "GET", url = "/users/x", headers?,
-- body?, dependsOn?}; ids default to the position.  Sent 20 per call;
-- throttled items are resent (bounded by max_retries).  responses[id] =
-- {id, status, headers, body} for every request: per-item failures
-- (404, or 429 still after the retries) are responses, not errors; err
-- is for the batch call itself failing.
function Client:batch(requests, opts)
  opts = opts or {}
  local items = self:batch_items(requests)
  local results = {}
  for first = 1, #items, self.batch_size do
    local ok, err = self:batch_chunk(table.move(items, first,
      math.min(#items, first + self.batch_size - 1), 1, {}), results, opts)
    if not ok then return nil, err end
  end
  return results
end

return M
