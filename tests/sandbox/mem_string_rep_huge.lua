-- Attack: one call asking for a 1 TiB string.
-- expect: not enough memory
-- limits: mem=64m cpu_ms=10000
local s = ("x"):rep(2 ^ 40)
error("LEAK: got a string of " .. #s .. " bytes")
