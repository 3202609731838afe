-- Attack: coroutines resuming coroutines, each level a lua_resume plus
-- the engine's coroutine.resume wrapper on the C stack.
-- expect: stack overflow
-- limits: mem=64m cpu_ms=10000
local function dive()
  local co = coroutine.create(dive)
  local ok, err = coroutine.resume(co)
  if not ok then error(err, 0) end
end
dive()
