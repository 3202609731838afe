-- Attack: CVE-2025-49844 pattern (Redis): the parser under memory pressure
-- from string.rep, with collectgarbage between loads, long chunk names and
-- sources, hoping the collector frees something the parser still uses.
-- Must end with a clean error, never a crash (run it under ASan).
-- expect: contained: load under memory pressure
-- limits: mem=64m cpu_ms=10000
local hog = {}
local ok = true
while ok do
  ok = pcall(function() hog[#hog + 1] = ("h"):rep(1024 * 1024) end)
end
table.remove(hog)                 -- leave about 1 MiB of headroom
local src = "local a = {" .. ("'%s',"):rep(2000):format(table.unpack((function()
  local t = {}
  for i = 1, 2000 do t[i] = ("v"):rep(i % 50) .. i end
  return t
end)())) .. "} return #a"
for i = 1, 200 do
  collectgarbage("step")
  local name = ("n"):rep(1000 + i)
  local f = load(src, name)
  if f then
    local n = f()
    if n ~= 2000 then error("loaded chunk returned " .. tostring(n)) end
  end
  if i % 50 == 0 then collectgarbage() end
end
error("contained: load under memory pressure ended cleanly")
