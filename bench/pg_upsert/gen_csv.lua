--[[
gen_csv.lua -- writes the benchmark rows as CSV for the psql baseline.
Plain lua5.4, untimed:  lua5.4 gen_csv.lua N > rows.csv
]]
local here = arg[0]:match("^(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path
local rows = require "pg_rows"

local n = assert(tonumber(arg[1]), "usage: lua5.4 gen_csv.lua N")
local out, chunk = io.stdout, {}
for i = 1, n do
  chunk[#chunk + 1] = rows.csv_line(i)
  if #chunk == 10000 or i == n then
    out:write(table.concat(chunk, "\n"), "\n")
    chunk = {}
  end
end
