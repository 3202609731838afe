-- A complete recipe: every field, every trigger kind, every param type.
local defaults = require "lib.defaults"

return {
  name = "workspace-audit",
  version = "1.2.0",
  description = "Pulls the audit log and posts a daily report",
  params = {
    callback_url  = {type = "url", required = true, description = "where reports go"},
    interval      = {type = "duration", default = "30s"},
    client_secret = {type = "string", secret = true, required = true},
    page_size     = {type = "integer", default = defaults.page_size},
    ratio         = {type = "number", default = 0.25},
    dry_run       = {type = "boolean", default = false},
    filters       = {type = "json", default = {kinds = {"login", "logout"}, max = 3}},
    region        = {type = "string", default = "eu"},
    pin           = {type = "integer", secret = true},
  },
  jobs = {
    fetch = {
      handler  = "jobs.fetch.run",
      triggers = {
        {every = "$interval"},
        {every = "5m"},
        {on = "webhook:audit"},
        {on = "stream:events"},
        {manual = true},
      },
      retry = {max_attempts = 7, base = "2s", cap = "5m", jitter = "none",
               max_elapsed = "1h"},
      concurrency = 2,
      timeout = "10m",
    },
    report = {
      handler = "jobs.report.daily",
      description = "the morning summary",
      triggers = {
        {cron = "0 7 * * 1-5", tz = "Europe/Paris"},
        {cron = "@weekly"},
      },
    },
  },
}
