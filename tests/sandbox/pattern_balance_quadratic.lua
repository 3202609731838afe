-- Attack: %b() scans to the end of the subject from every start position
-- when the brackets never balance: quadratic, with no repetition item.
-- expect: too expensive
local s = ("("):rep(1000000)
local r = s:find("%b()")
error("LEAK: the %b find returned " .. tostring(r))
