-- Attack: exponential backtracking with optional items only ('?'), which a
-- guard counting '*', '+' and '-' repetitions does not see: 2^40 steps.
-- expect: too expensive
local n = 40
local r = ("a"):rep(n):match(("a?"):rep(n) .. ("a"):rep(n))
error("LEAK: the exponential match returned " .. tostring(r))
