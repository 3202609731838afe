-- Attack: unbounded Lua recursion (not a tail call): the Lua stack grows
-- until LUAI_MAXSTACK or the memory cap.
-- expect: stack overflow
-- limits: mem=64m cpu_ms=10000
local function dive(n) return 1 + dive(n + 1) end
dive(1)
