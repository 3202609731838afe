#!/usr/bin/env bash
# bench/transform/run.sh -- JSON transform: weir vs lua5.4 + lua-cjson.
# Both sides run transform_common.lua over BENCH_N generated records
# (default 1,000,000) and time decode -> map -> encode only (os.clock,
# process CPU time; both sides are single-threaded), best of BENCH_REPEAT
# (default 3) interleaved runs.  Prints records/s,
# the ratio weir/lua, peak RSS of each process; fails only when the
# checksums differ.  Usually run through bench/run.sh.
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib/common.sh"

: "${BENCH_SUMMARY:=/dev/null}"
N=${BENCH_N:-1000000}
BATCH=${BENCH_BATCH:-10000}
REPEAT=${BENCH_REPEAT:-3}

bench_ensure_time
bench_need lua5.4 python3
lua5.4 -e 'require "cjson"' 2>/dev/null ||
  bench_die "lua-cjson is missing (apt-get install lua-cjson)"
[ -n "${WEIR_BIN:-}" ] || bench_build_weir

work=$(mktemp -d "${TMPDIR:-/tmp}/weir-bench-transform.XXXXXX")
trap 'rm -rf "$work"' EXIT

bench_log "transform: $N records, batches of $BATCH, best of $REPEAT"

# Every run of either side must produce the first run's checksum.
reference=
check_sum() {
  local sum; sum=$(bench_json_get "$work/$1.try.out" checksum)
  [ -n "$reference" ] || reference=$sum
  [ "$sum" = "$reference" ] ||
    bench_die "checksums differ: $1 run $r gave $sum, expected $reference"
}

# The CPU cap is lifted for the whole run because one batch may run for
# seconds on a slow machine; the script still yields between batches.
for r in $(seq 1 "$REPEAT"); do
  bench_log "transform: weir (run $r/$REPEAT, load $(bench_loadavg))"
  bench_measure "$work/weir.try" "$WEIR_BIN" run "$here/weir_transform.lua" \
    --cpu-limit 600000 --mem-limit 1g \
    --set "n=$N" --set "batch=$BATCH" ||
    { cat "$work/weir.try.err" >&2; bench_die "weir transform failed"; }
  check_sum weir
  bench_keep_best weir "$(bench_json_get "$work/weir.try.out" records_per_sec)" higher

  bench_log "transform: lua5.4 + lua-cjson (run $r/$REPEAT, load $(bench_loadavg))"
  bench_measure "$work/lua.try" lua5.4 "$here/lua_transform.lua" "$N" "$BATCH" ||
    { cat "$work/lua.try.err" >&2; bench_die "lua transform failed"; }
  check_sum lua
  bench_keep_best lua "$(bench_json_get "$work/lua.try.out" records_per_sec)" higher
done

w_rate=$(bench_json_get "$work/weir.out" records_per_sec)
w_secs=$(bench_json_get "$work/weir.out" seconds)
w_sum=$(bench_json_get "$work/weir.out" checksum)
l_rate=$(bench_json_get "$work/lua.out" records_per_sec)
l_secs=$(bench_json_get "$work/lua.out" seconds)
l_sum=$(bench_json_get "$work/lua.out" checksum)
w_rss=$(cat "$work/weir.rss"); l_rss=$(cat "$work/lua.rss")
ratio=$(bench_ratio "$w_rate" "$l_rate")

printf '\n== transform: %s records, decode -> map -> encode (CPU seconds), best of %s ==\n' "$N" "$REPEAT"
printf '%-20s %10s %14s %12s %10s  %s\n' side seconds records/s peak_RSS_MiB wall_s checksum
printf '%-20s %10.3f %14.0f %12s %10s  %s\n' weir "$w_secs" "$w_rate" \
  "$(bench_kib_to_mib "$w_rss")" "$(cat "$work/weir.wall")" "$w_sum"
printf '%-20s %10.3f %14.0f %12s %10s  %s\n' "lua5.4+cjson" "$l_secs" "$l_rate" \
  "$(bench_kib_to_mib "$l_rss")" "$(cat "$work/lua.wall")" "$l_sum"
printf 'ratio weir/lua (records/s): %sx (target >= 0.9x)\n' "$ratio"
printf '(wall_s is the whole process, record generation included; only the\n'
printf ' timed loop counts toward records/s)\n'

bench_row transform weir "$w_secs" "$w_rate" records/s "$w_rss" "weir/lua ${ratio}x (target >= 0.9x)"
bench_row transform "lua5.4+cjson" "$l_secs" "$l_rate" records/s "$l_rss" ""

if [ "$w_sum" != "$l_sum" ]; then
  bench_die "checksums differ: weir $w_sum, lua $l_sum"
fi
printf 'checksums match: %s\n' "$w_sum"
