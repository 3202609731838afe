local task = require "weir.task"
task.sleep(0.05)
return {name = "io", version = "1", jobs = {}}
