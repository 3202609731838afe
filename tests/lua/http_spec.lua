-- http_spec.lua -- weir.http against the local mock (tests/mocks/http_mock.py,
-- started by with_mocks.sh, which exports WEIR_MOCK_URL).

local http = require "weir.http"
local json = require "weir.json"
local task = require "weir.task"

local base = os.getenv("WEIR_MOCK_URL")

local function get(path, opts)
  opts = opts or {}
  opts.url = base .. path
  return http.request(opts)
end

-- Fails the test with the error table when a request did not get through.
local function ok_get(path, opts)
  local res, err = get(path, opts)
  assert(res, err and (err.kind .. ": " .. err.message))
  return res
end

-- Polls the mock until its `stat` for `group` reaches n (current: in
-- flight, abandoned: clients that hung up): bounded, and a condition
-- rather than a guess at how long something takes.
local function wait_stat(group, stat, n)
  for _ = 1, 1000 do
    local now = ok_get("/inflight", { query = { group = group } }):json()
    if now[stat] >= n then return now end
    task.sleep(0.01)
  end
  error("the mock never reported " .. stat .. " >= " .. n .. " for " .. group)
end

local group_seq = 0
local function new_group(what)
  group_seq = group_seq + 1
  return string.format("%s-%d-%d", what, math.floor(task.now() * 1e6), group_seq)
end

describe("http.request", function()
  it("has the mock URL", function()
    expect(base).to_match("^http://127%.0%.0%.1:%d+$")
  end)

  it("returns status, headers, body, url and elapsed", function()
    local res = ok_get("/echo")
    expect(res.status).to_equal(200)
    expect(math.type(res.status)).to_equal("integer")
    expect(res.headers["content-type"]).to_equal("application/json")
    expect(res.url).to_equal(base .. "/echo")
    expect(type(res.elapsed)).to_equal("number")
    expect(res.elapsed >= 0).to_be_truthy()
    local echo = res:json()
    expect(echo.method).to_equal("GET")
    expect(echo.path).to_equal("/echo")
    expect(#res.body > 0).to_be_truthy()
  end)

  it("sends every method, upper-cased", function()
    for _, m in ipairs({ "GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS" }) do
      local echo = ok_get("/echo", { method = m:lower() }):json()
      expect(echo.method).to_equal(m)
    end
  end)

  it("sends Content-Length: 0 for POST, PUT, PATCH without a body", function()
    for _, m in ipairs({ "POST", "PUT", "PATCH" }) do
      local echo = ok_get("/echo", { method = m }):json()
      expect(echo.headers["content-length"]).to_equal("0")
    end
  end)

  it("HEAD gets the headers and no body", function()
    local res = ok_get("/bytes", { method = "HEAD", query = { n = 1234 } })
    expect(res.status).to_equal(200)
    expect(res.headers["content-length"]).to_equal("1234")
    expect(res.body).to_equal("")
  end)

  it("url-encodes query tables, keys sorted, arrays repeated", function()
    local echo = ok_get("/echo", { query = {
      q = "a b&c=d/é", n = 5, f = 1.5, flag = true, list = { "x", "y" },
      ["k ey"] = "v",
    } }):json()
    expect(echo.raw_query).to_equal(
      "f=1.5&flag=true&k%20ey=v&list=x&list=y&n=5&q=a%20b%26c%3Dd%2F%C3%A9")
    assert.same({ q = "a b&c=d/é", n = "5", f = "1.5", flag = "true",
                  list = { "x", "y" }, ["k ey"] = "v" }, echo.query)
  end)

  it("appends query to a URL that already has one", function()
    local echo = ok_get("/echo?a=1", { query = { b = "2" } }):json()
    expect(echo.raw_query).to_equal("a=1&b=2")
  end)

  it("sends request headers, repeated ones as an array", function()
    local echo = ok_get("/echo", { headers = {
      ["X-Custom"] = "v", ["x-num"] = 42, ["X-Multi"] = { "a", "b" },
      ["X-Empty"] = "",
    } }):json()
    expect(echo.headers["x-custom"]).to_equal("v")
    expect(echo.headers["x-num"]).to_equal("42")
    expect(echo.headers["x-multi"]).to_equal("a, b")
    expect(echo.headers["x-empty"]).to_equal("")
    expect(echo.headers["user-agent"]).to_match("^weir/")
    expect(echo.headers["accept-encoding"]).to_contain("gzip")
    expect(echo.headers["expect"]).to_be_nil()
  end)

  it("lets a header override the default user agent", function()
    local echo = ok_get("/echo", { headers = { ["User-Agent"] = "probe/1" } }):json()
    expect(echo.headers["user-agent"]).to_equal("probe/1")
  end)

  it("lower-cases response header names and joins repeats", function()
    local res = ok_get("/headers", { query = {
      ["X-Foo"] = "bar", ["X-Rep"] = { "1", "2" },
      ["Set-Cookie"] = { "a=1; Path=/", "b=2, with comma" },
    } })
    expect(res.headers["x-foo"]).to_equal("bar")
    expect(res.headers["x-rep"]).to_equal("1, 2")
    assert.same({ "a=1; Path=/", "b=2, with comma" }, res.headers["set-cookie"])
    for name in pairs(res.headers) do
      expect(name).to_equal(name:lower())
    end
  end)

  it("sends a string body", function()
    local echo = ok_get("/echo", { method = "POST", body = "hello\0world" }):json()
    expect(echo.body_length).to_equal(11)
    expect(echo.headers["content-length"]).to_equal("11")
  end)

  it("sends a large body without waiting for 100-continue", function()
    local big = string.rep("0123456789", 200000)
    local echo = ok_get("/echo", { method = "PUT", body = big }):json()
    expect(echo.body_length).to_equal(#big)
    expect(echo.method).to_equal("PUT")
  end)

  it("round-trips a json body", function()
    local doc = { name = "weir", list = { 1, 2, 3 }, nested = { ok = true },
                  empty = setmetatable({}, json.array_mt) }
    local echo = ok_get("/echo", { method = "POST", json = doc }):json()
    expect(echo.headers["content-type"]).to_equal("application/json")
    local back = json.decode(echo.body)
    assert.same(doc, back)
    expect(json.encode(back.empty)).to_equal("[]")
  end)

  it("keeps a caller's content-type with json", function()
    local echo = ok_get("/echo", { method = "POST", json = { a = 1 },
      headers = { ["Content-Type"] = "application/vnd.api+json" } }):json()
    expect(echo.headers["content-type"]).to_equal("application/vnd.api+json")
  end)

  it("decodes JSON responses with :json()", function()
    local doc = ok_get("/json"):json()
    expect(doc.name).to_equal("weir")
    expect(doc.ratio).to_equal(0.5)
    expect(doc.unicode).to_equal("café ✓")
    expect(doc.nested.nothing).to_be(json.null)
    assert.same({ "a", "b" }, doc.tags)
    expect(json.encode(doc.empty)).to_equal("[]")
  end)

  it(":json() raises with the decode error on a non-JSON body", function()
    local res = ok_get("/bytes", { query = { n = 10 } })
    expect(res.body).to_equal("abcdefghij")
    expect(function() res:json() end).to_fail("not valid JSON")
  end)

  it("locks the shared response metatable", function()
    local res = ok_get("/echo")
    expect(getmetatable(res)).to_equal("locked")
    expect(function() setmetatable(res, nil) end).to_fail()
  end)

  it("returns 4xx and 5xx as responses", function()
    local res = ok_get("/status/404")
    expect(res.status).to_equal(404)
    expect(res:json().status).to_equal(404)
    res = ok_get("/status/503", { query = { retry_after = 7 } })
    expect(res.status).to_equal(503)
    expect(res.headers["retry-after"]).to_equal("7")
    expect(ok_get("/status/204").body).to_equal("")
  end)

  it("decodes gzip", function()
    local res = ok_get("/gzip")
    expect(res.headers["content-encoding"]).to_equal("gzip")
    local doc = res:json()
    expect(doc.gzipped).to_equal(true)
    expect(doc.doc.name).to_equal("weir")
  end)

  it("does not follow redirects unless asked", function()
    local res = ok_get("/redirect", { query = { to = "/echo", n = 1 } })
    expect(res.status).to_equal(302)
    expect(res.headers["location"]).to_equal("/echo")
  end)

  it("follows redirects when asked", function()
    local res = ok_get("/redirect", { query = { to = "/echo?x=1", n = 3 },
                                      follow_redirects = true })
    expect(res.status).to_equal(200)
    expect(res.url).to_equal(base .. "/echo?x=1")
    expect(res:json().query.x).to_equal("1")
    -- headers are the final response's
    expect(res.headers["location"]).to_be_nil()
  end)

  it("stops after follow_redirects hops", function()
    local res = ok_get("/redirect", { query = { to = "/echo", n = 2 },
                                      follow_redirects = 2 })
    expect(res.status).to_equal(200)
    local nothing, err = get("/redirect", { query = { to = "/echo", n = 3 },
                                            follow_redirects = 2 })
    expect(nothing).to_be_nil()
    expect(err.kind).to_equal("redirects")
    expect(err.retryable).to_equal(false)
  end)

  it("turns POST into GET on a 302 like browsers", function()
    local res = ok_get("/redirect", { method = "POST", body = "x",
      query = { to = "/echo" }, follow_redirects = true })
    expect(res:json().method).to_equal("GET")
  end)

  it("refuses to follow a redirect to file://", function()
    local res, err = get("/redirect", { query = { to = "file:///etc/passwd" },
                                        follow_redirects = true })
    expect(res).to_be_nil()
    expect(err.kind).to_equal("protocol")
  end)

  it("reuses connections (keep-alive)", function()
    local first = ok_get("/count"):json()
    local second = ok_get("/count"):json()
    local third = ok_get("/count"):json()
    expect(first.count >= 1).to_be_truthy()
    -- A new connection would report 1: a reused one has served before.
    expect(second.count > 1).to_be_truthy()
    expect(third.count > 1).to_be_truthy()
  end)
end)

describe("http.request transport errors", function()
  it("times out with kind timeout, retryable", function()
    local group = new_group("timeout")
    local res, err = get("/delay", { query = { ms = 5000, group = group },
                                     timeout = 0.2 })
    expect(res).to_be_nil()
    expect(err.kind).to_equal("timeout")
    expect(err.retryable).to_equal(true)
    expect(err.url).to_contain("/delay")
    expect(err.message).to_match("%S")
  end)

  it("times out on a body that stalls", function()
    local res, err = get("/slowbody", { query = { ms = 5000 }, timeout = 0.3 })
    expect(res).to_be_nil()
    expect(err.kind).to_equal("timeout")
  end)

  it("reports a dropped connection as network, retryable", function()
    local res, err = get("/drop")
    expect(res).to_be_nil()
    expect(err.kind).to_equal("network")
    expect(err.retryable).to_equal(true)
  end)

  it("reports a refused connection as connect", function()
    local port = ok_get("/closed_port"):json().port
    local res, err = http.request{ url = "http://127.0.0.1:" .. port .. "/",
                                   connect_timeout = 5 }
    expect(res).to_be_nil()
    expect(err.kind).to_equal("connect")
    expect(err.retryable).to_equal(true)
    expect(err.url).to_contain(tostring(port))
  end)

  it("reports TLS to a plain HTTP port as tls", function()
    local res, err = http.request{ url = (base:gsub("^http:", "https:")) .. "/echo" }
    expect(res).to_be_nil()
    expect(err.kind).to_equal("tls")
    expect(err.retryable).to_equal(false)
  end)

  it("aborts a body over max_body (Content-Length known)", function()
    local res, err = get("/bytes", { query = { n = 2000 }, max_body = 1000 })
    expect(res).to_be_nil()
    expect(err.kind).to_equal("too_large")
    expect(err.retryable).to_equal(false)
    expect(err.message).to_contain("1000")
  end)

  it("aborts a chunked body over max_body as it arrives", function()
    local res, err = get("/bytes", { query = { n = 300000, chunked = 1 },
                                     max_body = 100000 })
    expect(res).to_be_nil()
    expect(err.kind).to_equal("too_large")
  end)

  it("accepts a body of exactly max_body", function()
    local res = ok_get("/bytes", { query = { n = 100000, chunked = 1 },
                                   max_body = 100000 })
    expect(#res.body).to_equal(100000)
    expect(res.body:sub(1, 30)).to_equal("abcdefghijklmnopqrstuvwxyzabcd")
  end)

  it("works after errors (nothing left in a bad state)", function()
    expect(ok_get("/echo").status).to_equal(200)
  end)
end)

describe("http.request arguments", function()
  local function fails(opts, text)
    expect(function() http.request(opts) end).to_fail(text)
  end

  it("names the bad field", function()
    local u = base .. "/echo"
    fails({ url = u, timeout = "x" }, "http.request: field 'timeout' must be a number")
    fails({ url = u, timeout = 0 }, "field 'timeout' must be a positive number")
    fails({ url = u, connect_timeout = -1 }, "field 'connect_timeout'")
    fails({ url = u, max_body = -1 }, "field 'max_body'")
    fails({ url = u, max_body = 1.5 }, "field 'max_body'")
    fails({ url = u, follow_redirects = "yes" }, "field 'follow_redirects'")
    fails({ url = u, method = 3 }, "field 'method' must be a string")
    fails({ url = u, method = "GE T" }, "field 'method' is not a valid HTTP method")
    fails({ url = u, headers = "x" }, "field 'headers' must be a table")
    fails({ url = u, headers = { ["bad name"] = "v" } }, "not a valid header name")
    fails({ url = u, headers = { ["X-A"] = "a\r\nInjected: 1" } }, "line break")
    fails({ url = u, headers = { ["X-A"] = true } }, "header 'X-A' must be")
    fails({ url = u, query = "a=1" }, "field 'query' must be a table")
    fails({ url = u, query = { a = print } }, "query value 'a'")
    fails({ url = u, query = { [1] = "x" } }, "string keys")
    fails({ url = u, body = {} }, "field 'body' must be a string")
    fails({ url = u, body = "a", json = {} }, "'body' and 'json' are exclusive")
    fails({ url = u, json = { f = print } }, "")
    fails({ url = u, tiemout = 1 }, "unknown field 'tiemout'")
  end)

  it("checks the url", function()
    fails({}, "field 'url' must be a string")
    fails({ url = "not a url" }, "field 'url' is not a valid URL")
    fails({ url = "file:///etc/passwd" }, "must be an http or https URL")
    fails({ url = "ftp://127.0.0.1/" }, "must be an http or https URL")
    expect(function() http.request("http://x") end).to_fail()
  end)

  it("raises a clear error where it cannot yield", function()
    expect(function()
      table.sort({ 3, 1, 2 }, function(a, b)
        http.request{ url = base .. "/echo" }
        return a < b
      end)
    end).to_fail("http.request")
  end)
end)

describe("http.request concurrency", function()
  it("runs inside a user coroutine", function()
    local co = coroutine.wrap(function()
      return ok_get("/echo", { query = { from = "coroutine" } })
    end)
    expect(co():json().query.from).to_equal("coroutine")
  end)

  it("really overlaps requests (50 meet at a barrier)", function()
    local group = new_group("overlap")
    local handles = {}
    for i = 1, 50 do
      handles[i] = task.spawn(function()
        return get("/barrier", { query = { group = group, n = 50,
                                           timeout_ms = 20000 }, timeout = 30 })
      end)
    end
    for i, r in ipairs(task.all(handles)) do
      expect(r.ok).to_equal(true)
      assert(r.value, "request " .. i .. " failed")
      expect(r.value.status).to_equal(200)
    end
    expect(ok_get("/inflight", { query = { group = group } }):json().max).to_equal(50)
  end)

  it("keeps 1,000 requests in flight at once", function()
    local group = new_group("thousand")
    local n = 1000
    local handles = {}
    for i = 1, n do
      handles[i] = task.spawn(function()
        local res, err = get("/barrier", { query = { group = group, n = n,
                                                     timeout_ms = 60000 },
                                           timeout = 90, connect_timeout = 30 })
        if not res then error(err.kind .. ": " .. err.message) end
        return res.status
      end)
    end
    local statuses = {}
    for _, r in ipairs(task.all(handles)) do
      local key = r.ok and tostring(r.value) or tostring(r.error)
      statuses[key] = (statuses[key] or 0) + 1
    end
    assert.same({ ["200"] = n }, statuses)
    local stats = ok_get("/inflight", { query = { group = group } }):json()
    expect(stats.max).to_equal(n)
    expect(stats.total).to_equal(n)
  end)

  it("cancels a request in flight and keeps working", function()
    local group = new_group("cancel")
    local h = task.spawn(function()
      return get("/barrier", { query = { group = group, n = 2,
                                         timeout_ms = 30000 } })
    end)
    wait_stat(group, "current", 1)
    task.cancel(h)
    local ok, err = task.wait(h)
    expect(ok).to_equal(false)
    expect(tostring(err)).to_contain("cancel")
    expect(task.status(h)).to_equal("failed")
    -- the connection is closed: the mock sees the client hang up
    wait_stat(group, "abandoned", 1)
    expect(ok_get("/echo").status).to_equal(200)
  end)
end)
