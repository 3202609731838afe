-- Attack: one call asking for a 1 GiB string (Lua itself refuses 2^40 as "too large").
-- expect: not enough memory
-- limits: mem=64m cpu_ms=10000
local s = ("x"):rep(2 ^ 30)
error("LEAK: got a string of " .. #s .. " bytes")
