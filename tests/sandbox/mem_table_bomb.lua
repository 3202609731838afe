-- Attack: grow a table forever (every element a new table).
-- expect: not enough memory
-- limits: mem=64m cpu_ms=10000
local t = {}
local i = 0
while true do
  i = i + 1
  t[i] = { i, i }
end
