-- Attack: stop the collector (state-wide: the other jobs of the state
-- would stop collecting too), then allocate garbage.
-- expect: not allowed
collectgarbage("stop")
while true do local garbage = { ("x"):rep(100) } end
