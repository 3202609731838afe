-- Attack: log.secret copies each value into engine memory (malloc, not
-- the state's allocator): 100 MiB of "secrets" under a 64 MiB cap.
-- Secrets are engine-wide, so this also grows every log line's cost.
-- expect: log.secret
-- limits: mem=64m cpu_ms=10000
local log = require "weir.log"
local block = ("s"):rep(1024 * 1024)
for i = 1, 100 do log.secret(block .. i) end
error("LEAK: registered 100 MiB of log secrets past the 64 MiB memory cap")
