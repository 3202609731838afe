-- Attack: close the parent's coroutine from a spawned task while the
-- parent waits on an engine call (its op would complete into a dead
-- thread).
-- expect: waiting on an engine call
local task = require "weir.task"
local parent = coroutine.running()
local h = task.spawn(function()
  local ok, err = pcall(coroutine.close, parent)
  if ok then error("LEAK: closed a parked coroutine") end
  error(err, 0)
end)
local ok, err = task.wait(h)
error(err, 0)
