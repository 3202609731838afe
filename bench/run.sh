#!/usr/bin/env bash
# bench/run.sh -- the engine-core benchmarks.  Numbers are printed, never
# asserted; a run fails only when a side computes a wrong result.
#
#   bench/run.sh [all|transform|http|pg]
#
# Environment:
#   BENCH_N        transform records (default 1000000); values below 20000
#                  also shrink the HTTP run (quick smoke mode: BENCH_N=2000)
#   BENCH_HTTP_N   HTTP requests (default 20000)
#   BENCH_HTTP_CONCURRENCY  (default 64)
#   BENCH_BATCH    transform records generated per batch (default 10000)
#   BENCH_REPEAT   runs per side, interleaved, best kept (default 3)
#   BENCH_PG_BATCH rows per weir batch in the pg upsert (default 5000)
#   WEIR_BIN       use this weir binary instead of building build-bench/
# Everything runs on this machine; HTTP traffic goes to a private nginx on
# 127.0.0.1 only.  `pg` (not part of `all`: it takes minutes at 1M rows)
# starts a throwaway PostgreSQL 15 through tests/harness/pg.sh.
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib/common.sh"

which=${1:-all}
case "$which" in
  all|transform|http|pg) ;;
  -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
  *) echo "usage: bench/run.sh [all|transform|http|pg]" >&2; exit 2 ;;
esac

bench_ensure_time
bench_build_weir
export WEIR_BIN BENCH_ROOT

BENCH_SUMMARY=$(mktemp "${TMPDIR:-/tmp}/weir-bench-summary.XXXXXX")
export BENCH_SUMMARY
trap 'rm -f "$BENCH_SUMMARY"' EXIT

status=0
start=$(date +%s)
if [ "$which" = all ] || [ "$which" = transform ]; then
  "$here/transform/run.sh" || status=1
fi
if [ "$which" = all ] || [ "$which" = http ]; then
  "$here/http_fanout/run.sh" || status=1
fi
if [ "$which" = pg ]; then
  "$here/pg_upsert/run.sh" || status=1
fi

printf '\n== summary (%s, %s cores, %ss, load average now %s) ==\n' \
  "$(date -u +%Y-%m-%dT%H:%MZ)" "$(nproc)" "$(( $(date +%s) - start ))" "$(bench_loadavg)"
printf '%-10s %-20s %10s %14s %-11s %9s  %s\n' bench side seconds rate unit RSS_MiB note
while IFS=$'\t' read -r bench side secs rate unit rss note; do
  printf '%-10s %-20s %10.3f %14.0f %-11s %9s  %s\n' "$bench" "$side" "$secs" "$rate" \
    "$unit" "$(bench_kib_to_mib "$rss")" "$note"
done <"$BENCH_SUMMARY"
[ "$status" = 0 ] || printf '\nsome benchmark failed (see above)\n'
exit "$status"
