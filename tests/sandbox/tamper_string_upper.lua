-- Attack: replace a shared library function (CVE-2022-24735 class): every
-- other chunk of the state would call the attacker's string.upper.
-- expect: read-only
string.upper = function() return "PWNED" end
error("LEAK: string.upper was replaced")
