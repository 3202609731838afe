-- Attack: load a C module.  Debian ships cjson.so in the system Lua
-- cpath; a sandboxed require must never dlopen anything.
-- expect: module 'cjson' not found
local cjson = require "cjson"
error("LEAK: require loaded the C module cjson: " .. tostring(cjson))
