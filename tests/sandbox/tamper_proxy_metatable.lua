-- Attack: get at the real library table behind a read-only proxy through
-- its metatable (getmetatable / setmetatable on the proxy).
-- expect: cannot change a protected metatable
local mt = getmetatable(string)
if type(mt) == "table" then
  local real = rawget(mt, "__index")
  if type(real) == "table" then
    real.upper = function() return "PWNED" end
    error("LEAK: getmetatable(string).__index is the writable string table")
  end
end
setmetatable(math, { __index = { PWNED_PROXY_MT = true } })
error("LEAK: setmetatable replaced the metatable of the math proxy")
