-- Attack: recursion through string.gsub callbacks: every level is a C
-- frame (gsub, plus the engine's pattern guard), so this targets the C
-- stack rather than the Lua stack.
-- expect: stack overflow
-- limits: mem=64m cpu_ms=10000
local function dive(s) return (s:gsub(".", dive)) end
dive("x")
