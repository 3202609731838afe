-- Attack: run an arbitrary file with dofile.
-- expect: global 'dofile'
local params = ...
local v = dofile(params.outside_file)
error("LEAK: dofile ran a host file: " .. tostring(v))
