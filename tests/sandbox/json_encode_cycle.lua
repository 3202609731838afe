-- Attack: json.encode of a table that contains itself (infinite output).
-- expect: cycle
local json = require "weir.json"
local t = { name = "loop" }
t.self = t
local s = json.encode(t)
error("LEAK: encoded a cycle: " .. #s)
