-- Attack: pairs() on a read-only library proxy must not hand out the real
-- table as the iterator state; if it does, writing through that state
-- changes the library for every chunk of the state.
-- expect: read-only
local written = {}
for _, name in ipairs({ "string", "table", "math", "os", "coroutine", "utf8" }) do
  local lib = _ENV[name]
  local _, state = pairs(lib)
  if type(state) == "table" then
    local ok = pcall(function() state.PWNED_PAIRS = true end)
    if ok and rawget(state, "PWNED_PAIRS") then written[#written + 1] = name end
  end
end
if #written > 0 then
  -- make the damage visible to the victim chunk too
  local _, real_string = pairs(string)
  pcall(function() real_string.upper = function() return "PWNED" end end)
  error("LEAK: pairs() exposed writable library tables: " .. table.concat(written, ", "))
end
error("contained: pairs() gave no writable library table (read-only)")
