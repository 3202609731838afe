-- Attack: compile an arbitrary file with loadfile.
-- expect: global 'loadfile'
local params = ...
local f = loadfile(params.outside_file)
error("LEAK: loadfile compiled a host file: " .. tostring(f))
