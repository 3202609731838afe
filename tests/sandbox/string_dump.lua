-- Attack: produce bytecode with string.dump (to reload it as binary).
-- expect: field 'dump'
local bytecode = string.dump(function() return 1 end)
error("LEAK: string.dump returned " .. #bytecode .. " bytes")
