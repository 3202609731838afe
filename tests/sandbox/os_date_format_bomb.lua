-- Attack: a 2 MB os.date format: strftime output (24 bytes per %c) built
-- in C without a look at the clock.
-- expect: format longer than
local s = os.date(("%c"):rep(1000000))
error("LEAK: os.date formatted " .. #s .. " bytes")
