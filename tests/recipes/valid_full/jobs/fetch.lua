local M = {}
function M.run(params)
  return {fetched = 0}
end
return M
