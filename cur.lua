local cursor = require "weir.cursor"
local weir = require "weir"
local params = ...
local c = cursor.get("feed") or 0
weir.count("read", 10); weir.count("written", 7)
cursor.set("feed", c + 1)
if params.fail then error("failing after set") end
return c + 1
