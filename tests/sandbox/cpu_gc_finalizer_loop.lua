-- Attack: Lua turns hooks off while a __gc finalizer runs, and errors in
-- finalizers become warnings: a finalizer that spins can hold the engine
-- thread forever.  The engine must still end this job.
-- expect: __gc metamethods are not allowed
do
  setmetatable({}, { __gc = function() while true do end end })
end
collectgarbage()
collectgarbage()
error("LEAK: the finalizer returned")
