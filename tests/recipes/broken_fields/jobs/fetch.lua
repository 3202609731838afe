local M = {}
function M.run() end
function M.setup() end
return M
