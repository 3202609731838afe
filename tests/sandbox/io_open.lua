-- Attack: read a host file through the io library.
-- The sandbox has no io: indexing it must fail before any file is touched.
-- expect: global 'io'
local f = io.open("/etc/passwd", "r")
error("LEAK: io.open returned " .. tostring(f))
