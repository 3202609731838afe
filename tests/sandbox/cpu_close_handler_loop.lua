-- Attack: spin inside a __close handler on normal scope exit.
-- expect: CPU limit
do
  local guard <close> = setmetatable({}, { __close = function() while true do end end })
end
error("LEAK: the __close handler returned")
