-- Attack: require with an absolute path (dots become slashes in stock Lua)
-- and with the runner's /tmp file written in dotted form.
-- expect: invalid module name
local params = ...
local dotted = params.outside_dir:gsub("/", ".") .. ".outside"
local ok, err = pcall(require, dotted)
if ok then error("LEAK: require '" .. dotted .. "' loaded a file outside the roots") end
local m = require(params.outside_file)
error("LEAK: require of an absolute path returned " .. tostring(m))
