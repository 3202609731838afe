#!/usr/bin/env bash
# check.sh WEIR -- `weir check DIR`: validates a recipe pack.
#   success: `ok: NAME VERSION: N jobs, M params`, exit 0
#   failure: every problem, one per line (`FILE:LINE: path: what`), exit 1
source "$(dirname "$0")/testlib.bash" "$@"

FIXTURES=$(cd "$(dirname "$0")/../recipes" && pwd)

# Problems may go to stdout or stderr: look at both.
expect_any() {
    if printf '%s\n%s\n' "$OUT" "$ERR" | grep -Eq -- "$1"; then pass; else fail "$2: output does not match /$1/"; fi
}
count_lines() {
    printf '%s\n%s\n' "$OUT" "$ERR" | grep -Ec -- "$1"
}

run_weir check "$FIXTURES/valid_full"
expect_rc 0 "valid recipe"
expect_last_line "ok: workspace-audit 1.2.0: 2 jobs, 9 params" "summary of a valid recipe"

run_weir check "$FIXTURES/valid_minimal"
expect_rc 0 "minimal recipe"
expect_last_line "ok: minimal 0.1: 1 job, 0 params" "singular job"

run_weir check "$FIXTURES/valid_locals/"
expect_rc 0 "recipe built from locals (trailing slash in DIR)"
expect_out '^ok: locals\.demo 2026\.05: 2 jobs, 0 params$' "summary"

# the contract's own example, in a fresh directory
write retry/recipe.lua <<'LUA'
return {
  name = "retry-demo",
  version = "1.0.0",
  jobs = {
    fetch = {
      handler = "jobs.fetch.run",
      retry = {
        max_attempts = -1,
      },
    },
  },
}
LUA
write retry/jobs/fetch.lua <<'LUA'
return {run = function() end}
LUA
run_weir check "$TMP/retry"
expect_rc 1 "invalid retry"
expect_any 'recipe\.lua:8: jobs\.fetch\.retry\.max_attempts: must be an integer >= 1 \(got -1\)$' \
    "problem with file, line and field path"
expect_no_out '^ok:' "no summary on failure"

# every problem, not only the first
run_weir check "$FIXTURES/broken_fields"
expect_rc 1 "recipe with many problems"
n=$(count_lines 'broken_fields/recipe\.lua:[0-9]+: ')
if [ "$n" -eq 32 ]; then pass; else fail "expected 32 problem lines, got $n"; fi
expect_any 'recipe\.lua:2: name: must match' "bad name"
expect_any 'recipe\.lua:22: jobs\.fetch\.triggers\[2\]\.cron: invalid cron expression "0 25 \* \* \*": hour: 25 is out of range 0-23 \(column 3\)' \
    "cron error with its column"
expect_any 'recipe\.lua:22: jobs\.fetch\.triggers\[2\]\.tz: unknown time zone "Europe/Pariss"' "bad tz"
expect_any "recipe\\.lua:33: jobs\\.nofn\\.handler: module 'jobs\\.fetch' has no function 'missing'" \
    "handler function checked"
expect_any "recipe\\.lua:34: jobs\\.nomod\\.handler: cannot load module 'jobs\\.absent'" \
    "handler module checked"

run_weir check "$FIXTURES/broken_syntax"
expect_rc 1 "syntax error"
expect_any "broken_syntax/recipe\\.lua:4: '}' expected" "syntax error with its line"

run_weir check "$FIXTURES/broken_io"
expect_rc 1 "I/O while loading"
expect_any 'broken_io/recipe\.lua:2: .*called task\.sleep while loading' "engine call at load named"

run_weir check "$FIXTURES/broken_cpu" --cpu-limit 200
expect_rc 1 "endless loop while loading"
expect_any 'broken_cpu/recipe\.lua:2: CPU limit' "CPU cap applies to loading"

run_weir check "$TMP/does-not-exist"
expect_rc 1 "missing directory"
expect_any 'does-not-exist: cannot open the recipe directory' "missing directory named"

mkdir -p "$TMP/empty"
run_weir check "$TMP/empty"
expect_rc 1 "directory without recipe.lua"
expect_any 'empty/recipe\.lua: cannot read' "missing recipe.lua named"

run_weir check
expect_rc 2 "no directory: usage error"

finish
