-- Attack: built-in modules are cached per state by require, so their
-- tables are shared by every chunk of the state: replace json.encode
-- for all of them.
-- expect: read-only
local json = require "weir.json"
json.PWNED_JSONMOD = true
json.encode = function() return "PWNED" end
error("LEAK: the shared weir.json module table was modified")
