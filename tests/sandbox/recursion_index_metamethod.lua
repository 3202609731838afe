-- Attack: an __index metamethod that indexes itself: C-stack recursion
-- through the VM's metamethod calls.
-- expect: stack overflow
-- limits: mem=64m cpu_ms=10000
local t = setmetatable({}, {})
getmetatable(t).__index = function(self, k) return self[k .. "x"] end
return t.a
