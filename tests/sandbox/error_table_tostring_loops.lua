-- Attack: an error object whose __tostring spins forever: the engine
-- formats job errors outside the job, where no CPU cap may apply.
-- expect: table without a 'message' field
error(setmetatable({}, { __tostring = function() while true do end end }))
