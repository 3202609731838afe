-- Attack: json.encode of a 100000-level nested table: the encoder recurses
-- in C, one frame per level.
-- expect: json.encode
-- limits: mem=64m cpu_ms=10000
local json = require "weir.json"
local root = {}
local node = root
for i = 1, 100000 do
  node[1] = {}
  node = node[1]
end
local s = json.encode(root)
error("LEAK: encoded " .. #s .. " bytes of nesting")
