#!/usr/bin/env bash
# bench/pg_upsert/run.sh -- upsert BENCH_N rows (default 1,000,000) into
# PostgreSQL 15: weir (db:upsert, ledger on and off) vs psql \copy of the
# same rows as CSV.  Every side loads a fresh table; best of BENCH_REPEAT
# (default 3) interleaved runs.  Prints rows/s (N / wall seconds of the
# whole process), the ratio weir/psql, peak RSS of each client; fails
# only when a side's row count or content differs from psql's.
#
# Sides: psql       psql -c "\copy t FROM file CSV" (CSV written untimed)
#        weir+ledger:pg      the ledger in the same PostgreSQL (WEIR_STORE_URL)
#        weir+ledger:sqlite  the ledger in a fresh SQLite file
#        weir                ledger off
# BENCH_PG_BATCH (default 5000) rows per batch on the weir side.
# Starts its own throwaway server through tests/harness/pg.sh unless
# WEIR_PG_DSN is set.  Usually run through bench/run.sh pg.
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib/common.sh"

if [ -z "${WEIR_PG_DSN:-}" ]; then
  exec "$BENCH_ROOT/tests/harness/pg.sh" with "$0" "$@"
fi

: "${BENCH_SUMMARY:=/dev/null}"
N=${BENCH_N:-1000000}
BATCH=${BENCH_PG_BATCH:-5000}
REPEAT=${BENCH_REPEAT:-3}

bench_ensure_time
bench_need psql lua5.4 python3
[ -n "${WEIR_BIN:-}" ] || bench_build_weir

work=$(mktemp -d "${TMPDIR:-/tmp}/weir-bench-pg.XXXXXX")
trap 'rm -rf "$work"' EXIT

sql() { PGOPTIONS="-c client_min_messages=warning" psql "$WEIR_PG_DSN" -X -q -v ON_ERROR_STOP=1 -At -c "$1"; }
create_sql=$(cd "$here" && lua5.4 -e 'package.path = "./?.lua;" .. package.path
  io.write(require("pg_rows").create_sql)')
fresh_table() { sql "DROP TABLE IF EXISTS $1; CREATE TABLE $1 ($create_sql)" >/dev/null; }
check_count() {
  local got; got=$(sql "SELECT count(*) FROM $1")
  [ "$got" = "$N" ] || bench_die "$1 has $got rows after the run, expected $N"
}

bench_log "pg: writing $N rows as CSV (untimed)"
lua5.4 "$here/gen_csv.lua" "$N" >"$work/rows.csv" || bench_die "CSV generation failed"
bench_log "pg: $N rows, weir batches of $BATCH, best of $REPEAT, server $(sql 'SHOW server_version')"

# run_weir NAME TABLE LEDGER STORE_URL
run_weir() {
  local name=$1 table=$2 ledger=$3 store=$4
  fresh_table "$table"
  bench_log "pg: $name (run $r/$REPEAT, load $(bench_loadavg))"
  WEIR_STORE_URL=$store WEIR_DATA_DIR=$work \
    bench_measure "$work/$name.try" "$WEIR_BIN" run "$here/weir_upsert.lua" \
      --cpu-limit 600000 --mem-limit 1g --set "n=$N" --set "batch=$BATCH" \
      --set "table=$table" --set "ledger=$ledger" --set "scope=bench-$r" ||
    { cat "$work/$name.try.err" >&2; bench_die "$name failed"; }
  check_count "$table"
  bench_keep_best "$name" "$(cat "$work/$name.try.wall")" lower
}

for r in $(seq 1 "$REPEAT"); do
  fresh_table t_psql
  bench_log "pg: psql \\copy (run $r/$REPEAT, load $(bench_loadavg))"
  bench_measure "$work/psql.try" psql "$WEIR_PG_DSN" -X -q -v ON_ERROR_STOP=1 \
      -c "\\copy t_psql FROM '$work/rows.csv' CSV" ||
    { cat "$work/psql.try.err" >&2; bench_die "psql \\copy failed"; }
  check_count t_psql
  bench_keep_best psql "$(cat "$work/psql.try.wall")" lower

  # A fresh ledger for every run, so every row is "new" as in the table.
  sql "DO \$\$ BEGIN IF to_regclass('weir.ledger') IS NOT NULL THEN
         TRUNCATE weir.ledger; END IF; END \$\$" >/dev/null
  run_weir weir_ledger_pg t_weir_lpg on "$WEIR_PG_DSN"
  [ "$(sql 'SELECT count(*) FROM weir.ledger')" = "$N" ] ||
    bench_die "the PostgreSQL ledger does not hold $N entries"
  run_weir weir_ledger_sqlite t_weir_lsq on "sqlite:$work/ledger-$r.db"
  rm -f "$work/ledger-$r.db"*
  run_weir weir_off t_weir_off off "sqlite:$work/unused.db"
done

# Every weir table must hold exactly psql's rows (json has no =: compare
# as jsonb).
for t in t_weir_lpg t_weir_lsq t_weir_off; do
  diff=$(sql "SELECT count(*) FROM t_psql a FULL JOIN $t b USING (id)
    WHERE (a.name, a.email, a.city, a.status, a.qty, a.score, a.active, a.created_at, a.payload::jsonb)
          IS DISTINCT FROM
          (b.name, b.email, b.city, b.status, b.qty, b.score, b.active, b.created_at, b.payload::jsonb)")
  [ "$diff" = 0 ] || bench_die "$t differs from t_psql in $diff rows"
done

p_secs=$(cat "$work/psql.wall"); p_rss=$(cat "$work/psql.rss")
p_rate=$(awk -v n="$N" -v s="$p_secs" 'BEGIN { printf "%.0f", n / s }')
printf '\n== pg upsert: %s rows x 10 columns into a fresh table, PostgreSQL %s, best of %s ==\n' \
  "$N" "$(sql 'SHOW server_version')" "$REPEAT"
printf '%-20s %9s %10s %12s %8s %8s %8s %8s %7s\n' side wall_s rows/s peak_RSS_MiB cpu_s \
  gen_s ledger_s upsert_s vs_psql
printf '%-20s %9.3f %10.0f %12s %8s %8s %8s %8s %7s\n' "psql \\copy" "$p_secs" "$p_rate" \
  "$(bench_kib_to_mib "$p_rss")" "$(cat "$work/psql.cpu")" - - - 1.00x
bench_row pg "psql \\copy" "$p_secs" "$p_rate" rows/s "$p_rss" ""
for name in weir_ledger_pg weir_ledger_sqlite weir_off; do
  secs=$(cat "$work/$name.wall"); rss=$(cat "$work/$name.rss")
  rate=$(awk -v n="$N" -v s="$secs" 'BEGIN { printf "%.0f", n / s }')
  ratio=$(bench_ratio "$rate" "$p_rate")
  case $name in
    weir_ledger_pg) label="weir+ledger(pg)"; note="weir/psql ${ratio}x (target >= 0.7x; main number)" ;;
    weir_ledger_sqlite) label="weir+ledger(sqlite)"; note="weir/psql ${ratio}x" ;;
    *) label="weir (no ledger)"; note="weir/psql ${ratio}x" ;;
  esac
  printf '%-20s %9.3f %10.0f %12s %8s %8.2f %8.2f %8.2f %6sx\n' "$label" "$secs" "$rate" \
    "$(bench_kib_to_mib "$rss")" "$(cat "$work/$name.cpu")" \
    "$(bench_json_get "$work/$name.out" gen_seconds)" \
    "$(bench_json_get "$work/$name.out" ledger_seconds)" \
    "$(bench_json_get "$work/$name.out" upsert_seconds)" "$ratio"
  bench_row pg "$label" "$secs" "$rate" rows/s "$rss" "$note"
done
printf 'ratio weir+ledger(pg)/psql (rows/s): %sx (target >= 0.7x)\n' \
  "$(bench_ratio "$(awk -v n="$N" -v s="$(cat "$work/weir_ledger_pg.wall")" 'BEGIN { print n / s }')" "$p_rate")"
printf '(wall_s is the whole client process: weir generates its rows in Lua,\n'
printf ' psql reads a CSV written beforehand; cpu_s is the client only, not the server)\n'
printf 'row counts match: %s in every table; every weir table equals t_psql\n' "$N"
