-- Attack: spin inside xpcall's message handler (it runs before the stack
-- unwinds), then carry on after xpcall returns.
-- expect: CPU limit
local ok, e = xpcall(function() error("first") end, function(m) while true do end end)
error("LEAK: the script kept running after the CPU kill: " .. tostring(e))
