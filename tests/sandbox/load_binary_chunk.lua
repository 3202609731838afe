-- Attack: load precompiled bytecode (crafted bytecode crashes the VM).
-- string.dump is absent, so forge a Lua 5.4 header.  Every path must be
-- refused: plain load, mode "b", mode "bt".
-- expect: binary chunks are not allowed
local header = "\27Lua\x54\x00\x19\x93\r\n\x1a\n\x04\x08\x08\x78\x56\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x28\x77\x40"
local f, err = load(header .. "\1\0\0\0", "=forged", "bt")
if f then error("LEAK: load accepted a binary chunk with mode 'bt'") end
local ok, err2 = pcall(load, header, "=forged", "b")
if ok and err2 then error("LEAK: load accepted a binary chunk with mode 'b'") end
local g, err3 = load(header)
if g then error("LEAK: load accepted a binary chunk with the default mode") end
error(err3)
