-- Attack: load a C library (libc's system) through package.loadlib.
-- expect: global 'package'
local f = package.loadlib("/lib/x86_64-linux-gnu/libc.so.6", "system")
error("LEAK: package.loadlib returned " .. tostring(f))
