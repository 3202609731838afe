-- Fixture for tests/cli/jobs.sh: one job per outcome the runner settles.
return {
  name = "jobs-basic", version = "1",
  params = { mode = {type = "string", default = "ok"} },
  jobs = {
    tick = { handler = "jobs.h.tick", triggers = {{every = "1s"}} },
    flaky = { handler = "jobs.h.flaky", triggers = {{every = "1h"}},
              retry = {max_attempts = 3, base = "200ms", jitter = "none"} },
    broken = { handler = "jobs.h.broken", triggers = {{manual = true}},
               retry = {max_attempts = 2, base = "100ms", jitter = "none"} },
    permanent = { handler = "jobs.h.permanent", triggers = {{manual = true}},
                  retry = {max_attempts = 5, base = "100ms"} },
    later = { handler = "jobs.h.later", triggers = {{manual = true}},
              retry = {max_attempts = 2, base = "5s"} },
    slow = { handler = "jobs.h.slow", triggers = {{manual = true}}, timeout = "300ms",
             retry = {max_attempts = 2, base = "100ms", jitter = "none"} },
    sleeper = { handler = "jobs.h.sleeper", triggers = {{manual = true}} },
    hold = { handler = "jobs.h.hold", triggers = {{manual = true}} },
    echo = { handler = "jobs.h.echo", triggers = {{manual = true}} },
  },
}
