-- Attack: plant globals (plain, through _G, through _ENV, with rawset)
-- hoping the next chunk of the state sees them.  They may be set; the
-- victim chunk checks that none of them is visible elsewhere.
-- expect: contained: globals
PWNED_GLOBAL = "plain"
_G.PWNED_G = "through _G"
_ENV.PWNED_ENV = "through _ENV"
rawset(_ENV, "PWNED_RAWSET_ENV", true)
rawset(_G, "PWNED_RAWSET_G", true)
if PWNED_GLOBAL ~= "plain" then error("own globals do not work") end
error("contained: globals set in this chunk only")
