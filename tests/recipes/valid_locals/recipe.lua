-- Tables built in locals first, returned at the end: line numbers still
-- point at the right place.
local sync = {
  handler = "jobs.sync.go",
  triggers = { {cron = "*/15 * * * *"} },
}

local jobs = {
  sync = sync,
  ["second-sync"] = {handler = "jobs.sync.go", concurrency = 3},
}

local recipe = {
  name = "locals.demo",
  version = "2026.05",
  jobs = jobs,
}
return recipe
