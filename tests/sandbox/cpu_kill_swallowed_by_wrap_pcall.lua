-- Attack: as above through coroutine.wrap inside pcall, then keep working
-- for a while with the instruction budget left before the next hook.
-- expect: CPU limit
local ok, err = pcall(coroutine.wrap(function() while true do end end))
local t = {}
for i = 1, 100 do t[i] = i end
return "LEAK: survived the CPU kill (" .. tostring(err) .. ")"
