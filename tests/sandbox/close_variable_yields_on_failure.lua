-- Attack: a pending __close handler that makes an engine call (yields)
-- while the engine resets the failed job's thread.
-- expect: first failure
local task = require "weir.task"
local guard <close> = setmetatable({}, { __close = function() task.sleep(0.01) end })
error("first failure")
