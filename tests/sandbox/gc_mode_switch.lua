-- Attack: retune the collector for the whole state (generational mode,
-- huge pause) so garbage of every job piles up.
-- expect: not allowed
collectgarbage("generational")
collectgarbage("incremental", 1000, 100)
collectgarbage("setpause", 100000)
error("LEAK: the collector parameters were changed")
