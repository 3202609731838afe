-- Attack: run a shell command.  os is a subset without execute.
-- expect: field 'execute'
local rc = os.execute("touch /tmp/weir_hostile_pwned")
error("LEAK: os.execute ran and returned " .. tostring(rc))
