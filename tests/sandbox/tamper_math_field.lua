-- Attack: state leaking across runs through a library table (redis #1725:
-- math.X = ... survived into the next script), and math.floor replaced.
-- expect: read-only
local ok = pcall(function() math.PWNED_MATH = "state from the previous run" end)
if ok and math.PWNED_MATH then error("LEAK: math.PWNED_MATH was stored") end
math.floor = function(x) return x end
error("LEAK: math.floor was replaced")
