-- Attack: redefine table.insert for every chunk of the state.
-- expect: read-only
table.insert = function(t, v) rawset(t, #t + 1, "PWNED") end
error("LEAK: table.insert was replaced")
