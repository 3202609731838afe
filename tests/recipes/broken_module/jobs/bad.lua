local M = {}
function M.run(
return M
