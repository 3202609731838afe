-- Attack: json.array_mt refuses assignments through __newindex, but rawset
-- skips metamethods: give every decoded array of the state an __index.
-- expect: read-only
local json = require "weir.json"
local mt = getmetatable(json.decode("[]"))
if type(mt) ~= "table" then mt = json.array_mt end
rawset(mt, "PWNED_ARRAYMT_RAW", true)
rawset(mt, "__index", function() return "PWNED" end)
error("LEAK: rawset modified the shared json array metatable")
