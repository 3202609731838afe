-- Attack: escape the require roots with a relative path that climbs out
-- of the script's directory to a Lua file the runner placed in /tmp.
-- expect: invalid module name
local params = ...
local ok, err = pcall(require, "../../etc/passwd")
if ok then error("LEAK: require '../../etc/passwd' succeeded") end
local m = require(params.outside_rel)
error("LEAK: require reached a file outside the roots: " .. tostring(m))
