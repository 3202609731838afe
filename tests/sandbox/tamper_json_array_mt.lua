-- Attack: json.array_mt is the metatable of every array json.decode
-- returns in this state; give it an __index so other jobs' decoded arrays
-- answer with attacker data.
-- expect: read-only
local json = require "weir.json"
local mt = getmetatable(json.decode("[]"))
if type(mt) == "table" then
  mt.PWNED_ARRAYMT = true
  mt.__index = function() return "PWNED" end
  error("LEAK: the shared json array metatable was modified")
end
json.array_mt.__index = function() return "PWNED" end
error("LEAK: json.array_mt was modified")
