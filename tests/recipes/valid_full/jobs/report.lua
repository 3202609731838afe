local M = {}
function M.daily(params)
  return "report"
end
return M
