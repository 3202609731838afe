return {
  name = "syntax",
  version = "1"
  jobs = {},
}
