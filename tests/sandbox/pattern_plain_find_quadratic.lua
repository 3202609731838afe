-- Attack: a literal needle (plain find, or a pattern without specials)
-- skips the pattern guard; the naive search compares the whole needle at
-- every position: 3e7 positions x 1e5 bytes.
-- expect: too expensive
-- limits: mem=64m cpu_ms=500
local s = ("a"):rep(30000000)
local needle = ("a"):rep(100000) .. "b"
local r = s:find(needle, 1, true)
error("LEAK: the quadratic plain find returned " .. tostring(r))
