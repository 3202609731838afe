-- Attack: double a string until the process runs out of memory.
-- expect: not enough memory
-- limits: mem=64m cpu_ms=10000
local s = "x"
while true do s = s .. s end
