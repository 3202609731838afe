-- Attack: an engine call (which yields) inside a table.sort comparator:
-- yielding across the C function table.sort is impossible; the engine
-- must say so instead of corrupting the job.
-- expect: C-call boundary
local task = require "weir.task"
local t = { 5, 3, 1, 4, 2 }
table.sort(t, function(a, b) task.sleep(0) return a < b end)
error("LEAK: the comparator slept")
