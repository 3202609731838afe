-- Attack: a to-be-closed variable whose __close raises while the scope
-- exits normally: the error must surface as the job's error.
-- expect: close boom
do
  local guard <close> = setmetatable({}, { __close = function() error("close boom") end })
end
error("LEAK: the __close error vanished")
