-- Attack: swallow the CPU-limit error with pcall and keep spinning.
-- expect: CPU limit
while true do
  pcall(function() while true do end end)
end
