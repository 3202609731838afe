-- Attack: reach the registry (and through it the real globals).
-- expect: global 'debug'
local reg = debug.getregistry()
error("LEAK: debug.getregistry returned " .. tostring(reg))
