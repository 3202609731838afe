--[[
lua_transform.lua -- the baseline side of the transform benchmark: bare
lua5.4 with Debian's lua-cjson running the same transform_common.lua.

  lua5.4 bench/transform/lua_transform.lua N BATCH

Prints one JSON object (records, seconds, records_per_sec, checksum).
]]
local dir = arg[0]:match("^(.*)/[^/]*$") or "."
package.path = dir .. "/?.lua;" .. package.path

local cjson = require "cjson"
local common = require "transform_common"

local result = common.run{
  n = tonumber(arg[1]) or 1000000,
  batch = tonumber(arg[2]) or 10000,
  decode = cjson.decode,
  encode = cjson.encode,
  null = cjson.null,
  clock = os.clock,
}
result.side = "lua5.4+cjson " .. cjson._VERSION
print(cjson.encode(result))
