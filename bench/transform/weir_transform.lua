--[[
weir_transform.lua -- the weir side of the transform benchmark: the
same transform_common.lua, with weir.json as the codec.

  weir run bench/transform/weir_transform.lua --set n=N --set batch=B

Returns one table (printed by `weir run` as JSON).  Between batches the
job yields (task.sleep(0), untimed) the way a long transform in a
recipe should, so the engine's CPU cap sees short slices.
]]
local params = ...
local json = require "weir.json"
local task = require "weir.task"
local common = require "transform_common"

local result = common.run{
  n = tonumber(params.n) or 1000000,
  batch = tonumber(params.batch) or 10000,
  decode = json.decode,
  encode = json.encode,
  null = json.null,
  clock = os.clock,
  pause = function() task.sleep(0) end,
}
result.side = "weir"
return result
