return {
  name = "module",
  version = "1",
  jobs = {
    a = {handler = "jobs.bad.run"},
    b = {handler = "jobs.notable.run"},
  },
}
