-- Attack: table.move over a huge empty range: a C loop of nil reads and
-- writes that allocates nothing and never reaches the count hook.
-- expect: table.move
table.move({}, 1, 2 ^ 40, 1, {})
error("LEAK: table.move returned after 2^40 iterations")
