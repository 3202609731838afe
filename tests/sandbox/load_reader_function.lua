-- Attack: feed load a reader function that returns the binary header in
-- pieces (the stock load accepts functions; the binary check on the first
-- byte of a string would not see it).
-- expect: only source text is accepted
local parts = { "\27", "Lua", "\x54\x00" }
local i = 0
local f, err = load(function() i = i + 1 return parts[i] end)
if f then error("LEAK: load accepted a reader function") end
error(err)
