-- Attack: hide the engine call inside a coroutine resumed from a gsub
-- callback: the coroutine forwards the engine yield, which cannot cross
-- gsub; the pending op must be dropped cleanly.
-- expect: C-call boundary
local task = require "weir.task"
local r = ("abc"):gsub(".", function(c)
  local step = coroutine.wrap(function() task.sleep(0.01) return c:upper() end)
  return step()
end)
error("LEAK: gsub waited on an engine call: " .. r)
