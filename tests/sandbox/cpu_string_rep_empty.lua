-- Attack: string.rep of an empty string allocates nothing, so the memory
-- cap never triggers, and it loops n times in C, where the count hook
-- cannot interrupt it: 2^50 iterations hold the engine thread for days.
-- expect: string.rep
local s = (""):rep(2 ^ 50)
error("LEAK: string.rep returned after 2^50 iterations (" .. #s .. ")")
