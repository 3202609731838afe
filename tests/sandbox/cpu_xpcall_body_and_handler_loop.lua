-- Attack: spin in the protected body, then spin again in the message
-- handler that the CPU-limit error itself invokes.  Lua calls the handler
-- from inside the hook's error, while hooks are still switched off.
-- expect: CPU limit
xpcall(function() while true do end end, function() while true do end end)
error("LEAK: the script kept running after the CPU kill")
