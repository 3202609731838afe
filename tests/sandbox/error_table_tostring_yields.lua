-- Attack: an error object whose __tostring makes an engine call (yields)
-- while the engine formats it.
-- expect: table without a 'message' field
local task = require "weir.task"
error(setmetatable({}, { __tostring = function() task.sleep(0.01) return "slept" end }))
