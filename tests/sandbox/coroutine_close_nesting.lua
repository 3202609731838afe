-- Attack: Lua 5.4.4 bug "C-stack overflow with deep nesting of
-- coroutine.close" (fixed in 5.4.5): each __close closes the previous
-- coroutine, so closing the last one recurses 30000 levels deep in C
-- with no C-stack check: a segfault of the whole engine in stock 5.4.4.
-- expect: stack overflow
-- limits: mem=64m cpu_ms=10000
local coro = false
for i = 1, 30000 do
  local previous = coro
  coro = coroutine.create(function()
    local cc <close> = setmetatable({}, { __close = function()
      if previous then assert(coroutine.close(previous)) end
    end })
    coroutine.yield()
  end)
  assert(coroutine.resume(coro))
end
local ok, err = coroutine.close(coro)
error(err)
