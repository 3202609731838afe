-- Attack: spin forever without yielding, starving every other job.
-- expect: CPU limit
local n = 0
while true do n = n + 1 end
