-- Attack: a spawned task resumes the parent's coroutine while the parent
-- waits on an engine call: the parent would run with its op still pending.
-- expect: waiting on an engine call
local task = require "weir.task"
local parent = coroutine.running()
local h = task.spawn(function()
  local ok, err = coroutine.resume(parent, "forged result")
  if ok then error("LEAK: resumed a parked coroutine") end
  error(err, 0)
end)
local ok, err = task.wait(h)
error(err, 0)
