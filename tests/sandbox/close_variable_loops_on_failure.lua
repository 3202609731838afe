-- Attack: a pending __close handler that spins when the failed job's
-- thread is reset by the engine (outside any resume).
-- expect: first failure
local guard <close> = setmetatable({}, { __close = function() while true do end end })
error("first failure")
