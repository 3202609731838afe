-- msgraph_spec.lua -- the Microsoft Graph connector (connectors/msgraph.lua).
--
-- Three groups:
--   * helpers and configuration: no server needed;
--   * against the generic HTTP mock (WEIR_MOCK_URL, from with_mocks.sh):
--     retry bounds, 401 handling and transport failures with an injected
--     token provider;
--   * against the Graph mock (GRAPH_MOCK_URL): tokens, paging, throttling,
--     delta, $batch.  tests/cli/msgraph_e2e.sh starts tests/mocks/
--     graph_mock.py and runs this file with GRAPH_MOCK_URL set; under a
--     plain `weir test` these are listed as pending (skip).
--
-- Timing is never guessed: Retry-After is checked with the gap the Graph
-- mock measured on its own clock between the throttled answer and the
-- retry, and counts come from the mock's /_control/stats.

local graph = require "msgraph"
local http = require "weir.http"
local json = require "weir.json"
local task = require "weir.task"

local MOCK = os.getenv("WEIR_MOCK_URL")
local GRAPH = os.getenv("GRAPH_MOCK_URL")

-- The Graph mock's default credentials (tests/mocks/README.md).
local TENANT = "weir-test-tenant"
local CLIENT_ID = "00000000-0000-4000-8000-00000000c11e"
local SECRET = "mock-secret-Q8~weir.graph"

local function keys_of(t)
  local ks = {}
  for k in pairs(t) do ks[#ks + 1] = k end
  table.sort(ks)
  return ks
end

describe("msgraph helpers", function()
  it("reads Retry-After as delay-seconds, fractions included", function()
    expect(graph.retry_after_seconds("2")).to_equal(2)
    expect(graph.retry_after_seconds(" 2.128 ")).to_equal(2.128)
    expect(graph.retry_after_seconds("0")).to_equal(0)
    expect(graph.retry_after_seconds(nil)).to_be_nil()
    expect(graph.retry_after_seconds("soon")).to_be_nil()
    expect(graph.retry_after_seconds("-1")).to_be_nil()
  end)

  it("reads Retry-After as an HTTP-date against the response's Date", function()
    expect(graph.http_date("Sun, 06 Nov 1994 08:49:37 GMT")).to_equal(784111777)
    expect(graph.http_date("Thu, 29 Feb 2024 23:59:59 GMT")).to_equal(1709251199)
    expect(graph.http_date("Sunday, 06-Nov-94 08:49:37 GMT")).to_be_nil()
    expect(graph.retry_after_seconds("Wed, 21 Oct 2015 07:28:05 GMT",
                                     "Wed, 21 Oct 2015 07:28:00 GMT")).to_equal(5)
    -- without a Date header, against the given clock; never negative
    expect(graph.retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", nil,
                                     1445412470)).to_equal(10)
    expect(graph.retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT",
                                     "Wed, 21 Oct 2015 08:00:00 GMT")).to_equal(0)
  end)

  it("refuses incomplete or mistyped configuration", function()
    expect(function() graph.client{ tenant = "t", client_id = "c" } end)
      .to_fail("option 'client_secret' is required")
    expect(function() graph.client{ tenant = "t", client_id = "c", client_secret = "s3cr3t",
                                    max_retry = 3 } end)
      .to_fail("unknown option 'max_retry'")
    expect(function() graph.client{ tenant = "t", client_id = "c", client_secret = "s3cr3t",
                                    timeout = "10" } end)
      .to_fail("option 'timeout' must be a number")
  end)

  it("fills {tenant} into the token URL and keeps the secret out of the client's fields", function()
    local c = graph.client{ tenant = "contoso.example", client_id = "c", client_secret = "s3cr3t-value" }
    expect(c.token_url).to_equal("https://login.microsoftonline.com/contoso.example/oauth2/v2.0/token")
    expect(c.base_url).to_equal("https://graph.microsoft.com/v1.0")
    for _, v in pairs(c) do expect(v).never.to_equal("s3cr3t-value") end
  end)

  it("never sends the token to another origin", function()
    local c = graph.client{ tenant = "t", client_id = "c", client_secret = "s3cr3t",
                            base_url = "http://127.0.0.1:9/v1.0",
                            token_provider = function() error("no token must be asked for") end }
    local body, err = c:request("GET", "http://evil.example/v1.0/users?$skiptoken=x")
    expect(body).to_be_nil()
    expect(err.kind).to_equal("origin")
    expect(tostring(err)).to_contain("evil.example")
  end)

  it("raises on batch misuse before sending anything", function()
    local c = graph.client{ tenant = "t", client_id = "c", client_secret = "s3cr3t",
                            token_provider = function() error("no token must be asked for") end }
    expect(function() c:batch({ { id = "a", url = "/me" }, { id = "a", url = "/users" } }) end)
      .to_fail("duplicate request id 'a'")
    local many = {}
    for i = 1, 21 do many[i] = { url = "/users/" .. i } end
    many[21].dependsOn = { "1" }
    expect(function() c:batch(many) end).to_fail("not in its chunk of 20")
  end)
end)

describe("msgraph against the generic mock", function()
  if not MOCK then
    pending("needs WEIR_MOCK_URL (tests/mocks/with_mocks.sh)")
    return
  end
  local provided
  local function client(opts)
    provided = 0
    local cfg = { tenant = "t", base_url = MOCK, backoff_base = 0.001, backoff_max = 0.01,
                  token_provider = function()
                    provided = provided + 1
                    return "token-" .. provided, 3600
                  end }
    for k, v in pairs(opts or {}) do cfg[k] = v end
    return graph.client(cfg)
  end

  it("returns permanent errors at once with the status", function()
    local body, err = client():request("GET", "/status/404")
    expect(body).to_be_nil()
    expect(err.kind).to_equal("http")
    expect(err.status).to_equal(404)
    expect(err.retryable).to_equal(false)
    expect(err.attempts).to_equal(1)
  end)

  it("ends retries on 503 after max_retries + 1 attempts", function()
    local body, err = client{ max_retries = 2 }:request("GET", "/status/503")
    expect(body).to_be_nil()
    expect(err.status).to_equal(503)
    expect(err.retryable).to_equal(true)
    expect(err.attempts).to_equal(3)
    expect(tostring(err)).to_contain("gave up after 3 attempts")
  end)

  it("ends retries on dropped connections, and resends only safe methods", function()
    local c = client{ max_retries = 1 }
    local body, err = c:request("GET", "/drop")
    expect(body).to_be_nil()
    expect(err.kind).to_equal("network")
    expect(err.attempts).to_equal(2)
    body, err = c:request("POST", "/drop", { json = { x = 1 } })
    expect(err.kind).to_equal("network")
    expect(err.attempts).to_equal(1)
  end)

  it("fails instead of waiting a Retry-After longer than max_retry_after", function()
    local body, err = client{ max_retry_after = 5 }:request("GET", "/status/429",
                                                          { query = { retry_after = 3600 } })
    expect(body).to_be_nil()
    expect(err.status).to_equal(429)
    expect(err.attempts).to_equal(1)
    expect(tostring(err)).to_contain("exceeds max_retry_after")
  end)

  it("asks for a new token once on 401, then reports the 401", function()
    local c = client()
    local body, err = c:request("GET", "/status/401")
    expect(body).to_be_nil()
    expect(err.status).to_equal(401)
    expect(provided).to_equal(2)
    -- the second token is cached: a success asks for nothing more
    local echo = assert(c:get("/echo"))
    expect(echo.headers.authorization).to_equal("Bearer token-2")
    expect(provided).to_equal(2)
  end)

  it("passes a token provider's failure through", function()
    local c = graph.client{ tenant = "t", base_url = MOCK, token_provider = function()
      return nil, { kind = "auth", message = "vault sealed" }
    end }
    local body, err = c:get("/echo")
    expect(body).to_be_nil()
    expect(err.message).to_equal("vault sealed")
  end)

  it("returns non-JSON bodies as strings and sends default headers", function()
    local c = client{ headers = { ConsistencyLevel = "eventual" } }
    local echo = assert(c:get("/echo", { headers = { Prefer = "odata.maxpagesize=5" } }))
    expect(echo.headers.consistencylevel).to_equal("eventual")
    expect(echo.headers.prefer).to_equal("odata.maxpagesize=5")
    expect(echo.headers.accept).to_equal("application/json")
    local text = assert(c:get("/bytes", { query = { n = 3 } }))
    expect(text).to_equal("abc")
  end)
end)

describe("msgraph against the Graph mock", function()
  if not GRAPH then
    pending("needs GRAPH_MOCK_URL: run tests/cli/msgraph_e2e.sh")
    return
  end

  local function ctl(method, what, body)
    local res, err = http.request{ method = method, url = GRAPH .. "/_control/" .. what,
                                   json = body }
    assert(res, err and err.message)
    assert(res.status == 200, what .. ": HTTP " .. res.status .. " " .. res.body)
    return res:json()
  end
  local function stats() return ctl("GET", "stats") end
  local function faults(rule) return ctl("POST", "faults", rule) end
  local function truth()
    local ids = {}
    for _, u in ipairs(ctl("GET", "users").value) do ids[#ids + 1] = u.id end
    return ids
  end

  local function client(opts)
    local cfg = { tenant = TENANT, client_id = CLIENT_ID, client_secret = SECRET,
                  base_url = GRAPH .. "/v1.0", token_url = GRAPH .. "/{tenant}/oauth2/v2.0/token",
                  backoff_base = 0.01, backoff_max = 0.05 }
    for k, v in pairs(opts or {}) do cfg[k] = v end
    return graph.client(cfg)
  end

  local function ids_of(items)
    local ids, seen = {}, {}
    for _, it in ipairs(items) do
      local id = it.id or (it.item and it.item.id)
      assert(not seen[id], "duplicate id " .. tostring(id))
      seen[id] = true
      ids[#ids + 1] = id
    end
    table.sort(ids)
    return ids
  end
  local function sorted(list) table.sort(list) return list end

  before_each(function() ctl("POST", "reset") end)

  describe("tokens", function()
    it("fetches one token and reuses it", function()
      local c = client()
      assert(c:get("/users", { query = { ["$top"] = 1 } }))
      assert(c:get("/groups"))
      local s = stats()
      expect(s.tokens_issued).to_equal(1)
      expect(s.token_requests).to_equal(1)
    end)

    it("shares one token fetch between concurrent tasks", function()
      local c = client()
      local handles = {}
      for i = 1, 5 do
        handles[i] = task.spawn(function() return assert(c:get("/users", { query = { ["$top"] = i } })) end)
      end
      for i, r in ipairs(task.all(handles)) do
        expect(r.ok).to_equal(true)
        expect(#r.value.value).to_equal(i)
      end
      expect(stats().tokens_issued).to_equal(1)
    end)

    it("refreshes once after the token expired and retries the request", function()
      local c = client()
      assert(c:get("/users", { query = { ["$top"] = 1 } }))
      ctl("POST", "expire_tokens")
      local page = assert(c:get("/users", { query = { ["$top"] = 2 } }))
      expect(#page.value).to_equal(2)
      local s = stats()
      expect(s.tokens_issued).to_equal(2)
      assert.same({ ["200"] = 2, ["401"] = 1 }, s.statuses["/v1.0/users"])
    end)

    it("rides through a token expiring midway through paging", function()
      faults{ path = "/v1.0/users", sequence = { { pass = true }, { expire_tokens = true } } }
      local users = assert(client():list("/users", { query = { ["$top"] = 50 } }))
      expect(#users).to_equal(250)
      assert.same(sorted(truth()), ids_of(users))
      expect(stats().tokens_issued).to_equal(2)
    end)

    it("gives up with the 401 when even a fresh token is refused", function()
      ctl("POST", "config", { token_lifetime = 0 })
      local body, err = client():get("/users")
      expect(body).to_be_nil()
      expect(err.kind).to_equal("http")
      expect(err.status).to_equal(401)
      expect(err.code).to_equal("InvalidAuthenticationToken")
      expect(stats().tokens_issued).to_equal(2)
    end)

    it("reports a wrong secret as a permanent auth error naming tenant and client", function()
      local wrong = "wrong-secret-0123456789"
      local body, err = client{ client_secret = wrong }:get("/users")
      expect(body).to_be_nil()
      expect(err.kind).to_equal("auth")
      expect(err.status).to_equal(401)
      expect(err.code).to_equal("invalid_client")
      expect(err.retryable).to_equal(false)
      expect(err.tenant).to_equal(TENANT)
      expect(err.client_id).to_equal(CLIENT_ID)
      local msg = tostring(err)
      expect(msg).to_contain(TENANT)
      expect(msg).to_contain(CLIENT_ID)
      expect(msg).to_contain("AADSTS7000215")
      expect(msg).never.to_contain(wrong)
      expect(json.encode(err)).never.to_contain(wrong)
      local s = stats()
      expect(s.token_requests).to_equal(1)
      expect(s.requests["/v1.0/users"]).to_be_nil()
    end)

    it("reports a bad scope and an unknown tenant", function()
      local _, err = client{ scope = "https://graph.microsoft.com/User.Read" }:get("/users")
      expect(err.status).to_equal(400)
      expect(err.code).to_equal("invalid_scope")
      _, err = client{ tenant = "nobody.example" }:get("/users")
      expect(err.code).to_equal("invalid_request")
      expect(tostring(err)).to_contain("Tenant 'nobody.example' not found")
    end)
  end)

  describe("paging", function()
    it("follows nextLink across every page, no user twice", function()
      local users = assert(client():list("/users", { query = { ["$top"] = 40 } }))
      expect(#users).to_equal(250)
      assert.same(sorted(truth()), ids_of(users))
      local s = stats()
      expect(s.requests["/v1.0/users"]).to_equal(7)
      -- pages 2..7 used the mock's nextLink as given (literal "$", opaque token)
      local n = 0
      for _, entry in ipairs(s.log) do
        if entry.path == "/v1.0/users" then
          n = n + 1
          if n > 1 then expect(entry.query).to_match("^%$top=40&%$skiptoken=[%w_-]+$") end
        end
      end
    end)

    it("applies $select and stops at the last page", function()
      local users = assert(client():list("/users", { query = { ["$top"] = 999, ["$select"] = "id,displayName" } }))
      expect(#users).to_equal(250)
      assert.same({ "displayName", "id" }, keys_of(users[1]))
      expect(stats().requests["/v1.0/users"]).to_equal(1)
    end)

    it("pages groups too", function()
      local groups = assert(client():list("/groups", { query = { ["$top"] = 2 } }))
      expect(#groups).to_equal(5)
      expect(stats().requests["/v1.0/groups"]).to_equal(3)
    end)

    it("raises the error from the iterator; list() returns it", function()
      local c = client()
      expect(function() for _ in c:pages("/users", { query = { ["$top"] = 5000 } }) do end end)
        .to_fail("Invalid page size")
      local items, err = c:list("/users", { query = { ["$select"] = "nope" } })
      expect(items).to_be_nil()
      expect(err.status).to_equal(400)
      expect(err.code).to_equal("Request_BadRequest")
    end)
  end)

  describe("retries", function()
    it("waits at least Retry-After after a 429 (mock's clock)", function()
      faults{ path = "/v1.0/users", sequence = { { status = 429, retry_after = "0.3" } } }
      local page = assert(client():get("/users", { query = { ["$top"] = 3 } }))
      expect(#page.value).to_equal(3)
      local s = stats()
      expect(s.requests["/v1.0/users"]).to_equal(2)
      expect(#s.retry_gaps).to_equal(1)
      local gap = s.retry_gaps[1]
      expect(gap.status).to_equal(429)
      expect(gap.retry_after).to_equal(0.3)
      expect(gap.gap >= gap.retry_after).to_be_truthy()
    end)

    it("waits until an HTTP-date Retry-After", function()
      faults{ path = "/v1.0/users", sequence = { { status = 503, retry_after_http_date = 1 } } }
      assert(client():get("/users", { query = { ["$top"] = 1 } }))
      local gap = stats().retry_gaps[1]
      expect(gap.status).to_equal(503)
      expect(gap.retry_after >= 1).to_be_truthy()
      expect(gap.gap >= gap.retry_after).to_be_truthy()
    end)

    it("retries 503 and 504 without Retry-After (backoff)", function()
      faults{ path = "/v1.0/users", sequence = { { status = 503 }, { status = 504 } } }
      local page = assert(client():get("/users", { query = { ["$top"] = 4 } }))
      expect(#page.value).to_equal(4)
      assert.same({ ["200"] = 1, ["503"] = 1, ["504"] = 1 }, stats().statuses["/v1.0/users"])
    end)

    it("retries dropped connections", function()
      -- libcurl itself resends a request whose reused connection died, up
      -- to 5 times per transfer: 7 drops in a row are more than it can
      -- absorb, so at least one must be the connector's to retry.
      faults{ path = "/v1.0/users", sequence = { { drop = true, times = 7 } } }
      local page = assert(client{ max_retries = 8 }:get("/users", { query = { ["$top"] = 2 } }))
      expect(#page.value).to_equal(2)
      expect(stats().requests["/v1.0/users"]).to_equal(8)
    end)

    it("retries a throttled token endpoint", function()
      faults{ path = "/" .. TENANT .. "/oauth2/v2.0/token", sequence = { { status = 429, retry_after = "0" } } }
      assert(client():get("/users", { query = { ["$top"] = 1 } }))
      local s = stats()
      expect(s.token_requests).to_equal(2)
      expect(s.tokens_issued).to_equal(1)
    end)

    it("ends bounded retries in an error, not a hang", function()
      faults{ path = "/v1.0/users", sequence = { { status = 429, retry_after = "0", times = 10 } } }
      local body, err = client{ max_retries = 2 }:get("/users")
      expect(body).to_be_nil()
      expect(err.kind).to_equal("http")
      expect(err.status).to_equal(429)
      expect(err.code).to_equal("TooManyRequests")
      expect(err.retryable).to_equal(true)
      expect(err.attempts).to_equal(3)
      expect(stats().requests["/v1.0/users"]).to_equal(3)
      expect(#ctl("GET", "faults").rules[1].remaining).to_equal(7)
    end)

    it("does not retry permanent errors", function()
      local body, err = client():get("/users/00000000-0000-0000-0000-000000000000")
      expect(body).to_be_nil()
      expect(err.status).to_equal(404)
      expect(err.code).to_equal("Request_ResourceNotFound")
      expect(err.retryable).to_equal(false)
      expect(err.attempts).to_equal(1)
      expect(stats().requests["/v1.0/users/00000000-0000-0000-0000-000000000000"]).to_equal(1)
    end)
  end)

  describe("delta", function()
    local select = { ["$select"] = "id,displayName,jobTitle" }

    it("does a full initial round and returns a deltaLink", function()
      local sync = assert(client():delta_all("/users/delta", nil, { query = select }))
      expect(sync.resynced).to_equal(false)
      expect(sync.pages).to_equal(3)
      expect(#sync.changes).to_equal(250)
      for _, ch in ipairs(sync.changes) do expect(ch.kind).to_equal("upsert") end
      assert.same(sorted(truth()), ids_of(sync.changes))
      assert.same({ "displayName", "id", "jobTitle" }, keys_of(sync.changes[1].item))
      expect(sync.delta_link).to_match("^" .. GRAPH:gsub("%p", "%%%0") .. "/v1%.0/users/delta%?%$deltatoken=")
    end)

    it("returns only the changes since, removals included", function()
      local c = client()
      local first = assert(c:delta_all("/users/delta", nil, { query = select }))
      local ids = truth()
      local made = ctl("POST", "users", {
        create = { { displayName = "New One" }, { displayName = "New Two" } },
        update = { { id = ids[10], jobTitle = "Chief Delta Officer" } },
        delete = { ids[20] },
      })
      local second = assert(c:delta_all("/users/delta", first.delta_link))
      expect(second.resynced).to_equal(false)
      local upserts, removed = {}, {}
      for _, ch in ipairs(second.changes) do
        if ch.kind == "upsert" then upserts[ch.id] = ch.item else removed[#removed + 1] = ch end
      end
      assert.same(sorted({ made.created[1], made.created[2], ids[10] }), keys_of(upserts))
      expect(upserts[ids[10]].jobTitle).to_equal("Chief Delta Officer")
      expect(upserts[made.created[1]].displayName).to_equal("New One")
      -- $select of the first round still applies (carried by the token)
      assert.same({ "displayName", "id", "jobTitle" }, keys_of(upserts[made.created[2]]))
      expect(#removed).to_equal(1)
      expect(removed[1].kind).to_equal("removed")
      expect(removed[1].id).to_equal(ids[20])
      expect(removed[1].reason).to_equal("deleted")
      expect(second.delta_link).never.to_equal(first.delta_link)
      local third = assert(c:delta_all("/users/delta", second.delta_link))
      expect(#third.changes).to_equal(0)
    end)

    it("iterates changes lazily and reports the deltaLink at the end", function()
      local changes, sync = client():delta("/users/delta", nil, {})
      local n = 0
      for ch in changes do
        n = n + 1
        if n == 1 then expect(sync.delta_link).to_be_nil() end
      end
      expect(n).to_equal(250)
      expect(sync.delta_link).to_contain("$deltatoken=")
    end)

    it("restarts from Location on 410 and flags the resync", function()
      local c = client()
      local first = assert(c:delta_all("/users/delta", nil, { query = select }))
      ctl("POST", "users", { delete = { truth()[1] } })
      ctl("POST", "expire_delta_tokens")
      local again = assert(c:delta_all("/users/delta", first.delta_link))
      expect(again.resynced).to_equal(true)
      expect(again.changes[1].kind).to_equal("resync")
      expect(again.changes[1].reason).to_equal("syncStateNotFound")
      expect(#again.changes).to_equal(1 + 249)
      assert.same(sorted(truth()), ids_of({ table.unpack(again.changes, 2) }))
      -- Location carried the first round's $select
      assert.same({ "displayName", "id", "jobTitle" }, keys_of(again.changes[2].item))
      expect(stats().statuses["/v1.0/users/delta"]["410"]).to_equal(1)
      local after = assert(c:delta_all("/users/delta", again.delta_link))
      expect(after.resynced).to_equal(false)
      expect(#after.changes).to_equal(0)
    end)

    it("rides through throttling and an expired token during delta", function()
      faults{ path = "/v1.0/users/delta", sequence = {
        { status = 429, retry_after = "0.2" }, { status = 503 }, { pass = true }, { expire_tokens = true } } }
      local sync = assert(client():delta_all("/users/delta", nil, {}))
      expect(#sync.changes).to_equal(250)
      local s = stats()
      expect(s.tokens_issued).to_equal(2)
      expect(s.retry_gaps[1].gap >= 0.2).to_be_truthy()
    end)
  end)

  describe("$batch", function()
    it("chunks by 20 and retries a throttled item after its Retry-After", function()
      local ids = truth()
      local reqs = {}
      for i = 1, 25 do reqs[i] = { id = "u" .. i, url = "/users/" .. ids[i] .. "?$select=id,displayName" } end
      faults{ scope = "batch_item", path = "/v1.0/users/" .. ids[3],
              sequence = { { status = 429, retry_after = "0.2" } } }
      local out = assert(client():batch(reqs))
      for i = 1, 25 do
        expect(out["u" .. i].status).to_equal(200)
        expect(out["u" .. i].body.id).to_equal(ids[i])
      end
      local s = stats()
      expect(s.requests["/v1.0/$batch"]).to_equal(3)
      expect(s.batch_items["/v1.0/users/" .. ids[3]]).to_equal(2)
      expect(s.batch_items["/v1.0/users/" .. ids[4]]).to_equal(1)
      local gap = s.retry_gaps[1]
      expect(gap.kind).to_equal("batch_item")
      expect(gap.gap >= 0.2).to_be_truthy()
    end)

    it("resends a dependent item that failed only because its dependency was throttled", function()
      local ids = truth()
      faults{ scope = "batch_item", path = "/v1.0/users/" .. ids[1], sequence = { { status = 429, retry_after = "0" } } }
      local out = assert(client():batch({
        { id = "a", url = "/users/" .. ids[1] },
        { id = "b", url = "/users/" .. ids[2], dependsOn = { "a" } },
        { id = "c", url = "/users/nobody" },
      }))
      expect(out.a.status).to_equal(200)
      expect(out.b.status).to_equal(200)
      expect(out.c.status).to_equal(404)          -- per-item failures are answers
      expect(out.c.body.error.code).to_equal("Request_ResourceNotFound")
      expect(stats().batch_items["/v1.0/users/nobody"]).to_equal(1)
    end)

    it("leaves items throttled past max_retries as 429 answers", function()
      local ids = truth()
      faults{ scope = "batch_item", path = "/v1.0/users/" .. ids[1],
              sequence = { { status = 429, retry_after = "0", times = 5 } } }
      local out = assert(client{ max_retries = 1 }:batch({ { id = "x", url = "/users/" .. ids[1] } }))
      expect(out.x.status).to_equal(429)
      expect(stats().requests["/v1.0/$batch"]).to_equal(2)
    end)

    it("the mock refuses duplicate ids and more than 20 requests", function()
      local c = client()
      local _, err = c:request("POST", "/$batch", { json = { requests = {
        { id = "1", method = "GET", url = "/users" }, { id = "1", method = "GET", url = "/groups" } } } })
      expect(err.status).to_equal(400)
      expect(tostring(err)).to_contain("duplicate")
      local many = {}
      for i = 1, 21 do many[i] = { id = tostring(i), method = "GET", url = "/groups" } end
      _, err = c:request("POST", "/$batch", { json = { requests = many } })
      expect(err.status).to_equal(400)
      expect(tostring(err)).to_contain("maximum of 20")
    end)
  end)
end)
