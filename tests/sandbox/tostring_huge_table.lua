-- Attack: tostring of a huge table through a __tostring that renders
-- every element (and a __name far larger than any buffer): the result
-- must be bounded by the memory cap, not crash or hang.
-- expect: not enough memory
-- limits: mem=64m cpu_ms=10000
local big = {}
for i = 1, 1000000 do big[i] = i end
local named = setmetatable({}, { __name = ("N"):rep(8 * 1024 * 1024) })
local s1 = tostring(named)
setmetatable(big, { __tostring = function(self)
  local parts = {}
  for r = 1, 64 do parts[r] = table.concat(self, ",") end
  return table.concat(parts, ";")
end })
local s = tostring(big)
error("LEAK: tostring returned " .. #s .. " bytes")
