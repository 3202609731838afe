local t = {}
for i = 1, 1e8 do t[i] = {i} end
return {name = "mem", version = "1", jobs = {}}
