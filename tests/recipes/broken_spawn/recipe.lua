local task = require "weir.task"
task.spawn(function() return 1 end)
return {name = "spawn", version = "1", jobs = {a = {handler = "x.run"}}}
