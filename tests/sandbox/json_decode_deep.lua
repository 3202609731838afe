-- Attack: json.decode of a 1 MB document of nested arrays ([[[[...).
-- expect: json.decode
-- limits: mem=64m cpu_ms=10000
local json = require "weir.json"
local n = 500000
local v = json.decode(("["):rep(n) .. ("]"):rep(n))
error("LEAK: decoded " .. n .. " levels of nesting")
