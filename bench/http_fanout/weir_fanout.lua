--[[
weir_fanout.lua -- the weir side of the HTTP fan-out benchmark:
`concurrency` tasks pull request numbers from one shared counter and
GET `url` until `n` requests have been made.

  weir run bench/http_fanout/weir_fanout.lua \
      --set url=http://127.0.0.1:PORT/small.txt --set n=20000 \
      --set concurrency=64

The counter needs no lock: tasks are coroutines of one job's state and
only switch at engine calls.  Returns counts by status and the elapsed
monotonic time.
]]
local params = ...
local http = require "weir.http"
local task = require "weir.task"

local url = assert(params.url, "--set url=... is required")
local n = tonumber(params.n) or 20000
local concurrency = tonumber(params.concurrency) or 64

local issued, ok, other, body_bytes = 0, 0, 0, 0

local function worker()
  while issued < n do
    issued = issued + 1
    local res = http.request{ url = url }
    if res.status == 200 then ok = ok + 1 else other = other + 1 end
    body_bytes = body_bytes + #res.body
  end
end

local t0 = task.now()
local tasks = {}
for i = 1, concurrency do tasks[i] = task.spawn(worker) end
for i = 1, concurrency do
  local finished, err = task.wait(tasks[i])
  if not finished then error(err, 0) end
end
local seconds = task.now() - t0

return {
  side = "weir",
  requests = issued,
  status_200 = ok,
  status_other = other,
  body_bytes = body_bytes,
  seconds = seconds,
  requests_per_sec = issued / seconds,
}
