-- Attack: yield an arbitrary value from the job's own coroutine: the
-- engine must not mistake it for an engine call (and must not park the
-- job forever).
-- expect: coroutine.yield outside a coroutine
coroutine.yield(123, "garbage", {})
error("LEAK: the job was resumed after a garbage yield")
