return {
  name = "minimal",
  version = "0.1",
  jobs = {
    hello = {handler = "jobs.hello.run"},
  },
}
