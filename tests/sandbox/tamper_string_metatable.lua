-- Attack: the string metatable is shared by every string of the state:
-- change its __index so ("x"):rep(3) stops working, or reach the string
-- table through it.
-- expect: attempt to index a boolean value
local mt = getmetatable("")
if type(mt) == "table" then
  local ok = pcall(function() mt.__index = { PWNED_STRMT = true } end)
  if ok and ("").PWNED_STRMT then error("LEAK: string metatable __index replaced") end
  local ok2 = pcall(function() mt.__index.upper = function() return "PWNED" end end)
  if ok2 and ("a"):upper() ~= "A" then error("LEAK: string methods replaced via the metatable") end
end
mt.__index = {}
error("LEAK: getmetatable('') returned a writable " .. type(mt))
