-- Attack: yield the only light userdata a script can get (json.null),
-- hoping the engine takes it for its yield tag.
-- expect: coroutine.yield outside a coroutine
local json = require "weir.json"
coroutine.yield(json.null)
error("LEAK: the job was resumed after yielding json.null")
