-- Attack: swallow every memory error with pcall and keep asking, so the
-- memory cap alone never ends the job: the CPU cap must.
-- expect: CPU limit
while true do
  pcall(string.rep, "x", 2 ^ 40)
  pcall(function() local t = {} while true do t[#t + 1] = {} end end)
end
