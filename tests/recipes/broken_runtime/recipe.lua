local t = {}
local x = t.missing.field
return {name = "runtime", version = "1"}
