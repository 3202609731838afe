-- Attack: kill the whole engine process (every other job with it).
-- The runner also traps a real exit() through atexit.
-- expect: field 'exit'
os.exit(0, true)
error("LEAK: os.exit returned")
