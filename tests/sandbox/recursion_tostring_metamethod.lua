-- Attack: __tostring that calls tostring on itself: recursion through the
-- C function tostring / luaL_tolstring.
-- expect: stack overflow
-- limits: mem=64m cpu_ms=10000
local t = setmetatable({}, { __tostring = function(self) return "<" .. tostring(self) .. ">" end })
return tostring(t)
