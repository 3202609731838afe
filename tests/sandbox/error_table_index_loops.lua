-- Attack: an error object whose __index spins: if the engine reads
-- err.message with metamethods, attacker code runs inside the engine's
-- error formatter, after the job already failed.
-- expect: table without a 'message' field
error(setmetatable({}, { __index = function() while true do end end }))
