#!/usr/bin/env bash
# basics.sh WEIR -- version, help and usage errors (exit 2).
source "$(dirname "$0")/testlib.bash" "$@"

run_weir version
expect_rc 0 "weir version"
expect_out '[0-9]+\.[0-9]+\.[0-9]+' "weir version prints a version number"

run_weir --help
expect_rc 0 "weir --help"
expect_out '\brun\b' "--help lists the run command"
expect_out '\btest\b' "--help lists the test command"

run_weir help run
expect_rc 0 "weir help run"
expect_out '--set' "help run documents --set"
expect_out '--mem-limit' "help run documents --mem-limit"

run_weir
expect_rc 2 "weir without a command is a usage error"
expect_err_ci 'usage' "weir without a command prints usage on stderr"

run_weir rnu x.lua
expect_rc 2 "unknown command"
expect_err 'rnu' "unknown command is named"
expect_err '\brun\b' "unknown command 'rnu' suggests 'run'"

run_weir tset
expect_rc 2 "unknown command tset"
expect_err '\btest\b' "unknown command 'tset' suggests 'test'"

run_weir frobnicate
expect_rc 2 "unknown command with no close match"
expect_err 'frobnicate' "unknown command is named"

write ok.lua <<'LUA'
return 1
LUA

run_weir run "$TMP/ok.lua" --bogus
expect_rc 2 "unknown flag after run"
expect_err '--bogus' "unknown flag is named"
expect_no_out '.' "nothing on stdout for a usage error"

run_weir --bogus
expect_rc 2 "unknown global flag"
expect_err '--bogus' "unknown global flag is named"

run_weir run
expect_rc 2 "run without a file"

run_weir run "$TMP/ok.lua" --set novalue
expect_rc 2 "--set without '='"
expect_err 'novalue' "--set without '=' names the argument"

run_weir run "$TMP/ok.lua" --mem-limit lots
expect_rc 2 "--mem-limit with a bad size"
expect_err 'lots' "bad --mem-limit value is named"

run_weir test --filter
expect_rc 2 "--filter without a pattern"

finish
