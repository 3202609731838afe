local weir = require "weir"
local task = require "weir.task"
local cursor = require "weir.cursor"
local M = {}
function M.tick(ctx)
  local n = (cursor.get("ticks") or 0) + 1
  cursor.set("ticks", n)
  weir.count("read", 1)
  return n
end
function M.flaky(ctx)
  if ctx.attempt < 3 then error("flaky attempt " .. ctx.attempt) end
  weir.count("written", 1)
end
function M.broken(ctx) error("always broken: " .. ctx.params.mode) end
function M.permanent(ctx) weir.fail({message = "bad input record 17", field = "email"}) end
function M.later(ctx)
  if ctx.attempt == 1 then weir.retry("throttled", {after = 0.3}) end
end
function M.slow(ctx) task.sleep(10) end
-- the first run checkpoints, then sleeps (and is killed by the test);
-- the run that reclaims the item finds the checkpoint and finishes
function M.sleeper(ctx)
  if cursor.get("slept") then return "resumed" end
  cursor.set("slept", true)
  cursor.commit()
  task.sleep(tonumber(ctx.payload and ctx.payload.s) or 30)
end
function M.hold(ctx) task.sleep(30) end
function M.echo(ctx)
  assert(ctx.payload.x == 42, "payload did not arrive")
  assert(ctx.job == "echo" and ctx.trigger == "manual" and ctx.attempt == 1)
  assert(weir.job().job == "echo")
end
return M
