return {
  name = "empty",
  version = "",
  jobs = {},
}
