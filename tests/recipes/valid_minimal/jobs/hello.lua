return {run = function() return "hello" end}
