-- Attack: use-after-free of the error message.  The error object's
-- __index returns a freshly built 1 MiB string that nothing else
-- references; if the formatter reads err.message through __index, pops
-- it, then allocates (the traceback), an emergency collection at the
-- memory cap frees the string before it is copied.  The __index fills
-- the state to the cap first.  Run under ASan.
-- expect: table without a 'message' field
-- limits: mem=32m cpu_ms=10000
local LIMIT = 32 * 1024 * 1024
local keep = {}
local function used() return math.floor(collectgarbage("count") * 1024) end
local function fill()
  -- big blocks first, then smaller and smaller ones, each kept alive
  local size = 1024 * 1024
  while size >= 64 do
    local ok = pcall(function() keep[#keep + 1] = ("f"):rep(size - 25) end)
    if not ok then size = size // 2 end
  end
end
local err = setmetatable({}, { __index = function(_, k)
  if k ~= "message" then return nil end
  local msg = ("M"):rep(1024 * 1024)
  pcall(fill)
  return msg
end })
keep[1] = ("k"):rep(1024)
error(err)
