-- Attack: one repetition item is quadratic when the match fails: find
-- retries '.-' from every position of a 1 MB subject (5e11 steps in C).
-- expect: too expensive
local s = ("a"):rep(1000000)
local r = s:find(".-b")
error("LEAK: the quadratic find returned " .. tostring(r))
