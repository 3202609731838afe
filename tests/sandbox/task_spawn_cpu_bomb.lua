-- Attack: the CPU cap is per job: spawn 200 tasks that each spin until
-- killed (200 x the cap of starvation for every other job of the engine),
-- then fail.  A failed job's unfinished tasks must not outlive it.
-- expect: parent failed after spawning
local task = require "weir.task"
for i = 1, 200 do
  task.spawn(function() while true do end end)
end
error("parent failed after spawning 200 spinning tasks")
