-- Attack: remove the engine's CPU hook, then spin.
-- expect: global 'debug'
debug.sethook()
while true do end
