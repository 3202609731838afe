-- Attack: a chunk loaded without an env falls back to "the global
-- table" in stock Lua: the real one, with io, debug and package.  Also try
-- an explicit nil env and a chunk that reads _G.
-- expect: contained: load
local probe = "return io, debug, package, dofile, os.execute, string.dump"
local f = load(probe)
local found = { f() }
for i = 1, 6 do
  if found[i] ~= nil then error("LEAK: load()ed chunk sees a forbidden value #" .. i) end
end
local g = load("return _G.io or _G.debug or _G.package")
if g() ~= nil then error("LEAK: _G of a load()ed chunk has io/debug/package") end
local h = load("return getmetatable(_ENV)")
if type(h()) == "table" then error("LEAK: getmetatable(_ENV) exposes the base") end
error("contained: load() chunks see only the sandbox")
