-- Attack: coroutine.resume catches errors like pcall does.  Spin inside a
-- coroutine until the CPU cap kills it, then return normally: a killed
-- job must never end as a success.
-- expect: CPU limit
local co = coroutine.create(function() while true do end end)
local ok, err = coroutine.resume(co)
return "LEAK: survived the CPU kill (" .. tostring(err) .. ")"
