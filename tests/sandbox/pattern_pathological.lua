-- Attack: a backtracking pattern with many repetition items: n^8 steps,
-- all inside C where the count hook cannot interrupt.
-- expect: too expensive
local s = ("a"):rep(30000)
local r = s:find((".-"):rep(8) .. "b")
error("LEAK: the pathological find returned " .. tostring(r))
