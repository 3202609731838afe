-- Attack: rawset bypasses __newindex, so a proxy's read-only guard does
-- not apply; plant a field in the shared string table.
-- expect: read-only
rawset(string, "PWNED_RAWSET", true)
rawset(string, "upper", function() return "PWNED" end)
error("LEAK: rawset wrote into the string library table")
