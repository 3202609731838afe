-- Attack: replace task.sleep in the shared weir.task module so other jobs
-- of the state never wait (or run attacker code).
-- expect: read-only
local task = require "weir.task"
task.PWNED_TASKMOD = true
task.sleep = function() end
error("LEAK: the shared weir.task module table was modified")
