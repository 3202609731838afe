-- Attack: redis #2854: setmetatable(_G, nil) unlocked the global table.
-- Here, remove the env's metatable to reach or detach the shared base.
-- expect: cannot change a protected metatable
local error, pcall, getmetatable, setmetatable = error, pcall, getmetatable, setmetatable
local mt = getmetatable(_ENV)
if type(mt) == "table" then error("LEAK: getmetatable(_ENV) returned the real metatable") end
local ok = pcall(setmetatable, _G, nil)
if ok then error("LEAK: setmetatable(_G, nil) succeeded") end
setmetatable(_ENV, nil)
error("LEAK: setmetatable(_ENV, nil) succeeded")
