#!/usr/bin/env bash
# kill -9 during a sync, several times, then finish: no row missing or
# duplicated, the cursor matches the data, the ledger matches the rows
# (rows + ledger + cursor commit in one PostgreSQL transaction).
source "$(dirname "$0")/testlib.bash" "$@"
root=$(cd "$(dirname "$0")/../.." && pwd)
cat > "$TMP/inner.sh" <<SH
set -u
export WEIR_STORE_URL="\$WEIR_PG_DSN" WEIR_DATA_DIR="$TMP/data"
psql "\$WEIR_PG_DSN" -qc "CREATE TABLE items (id bigint PRIMARY KEY, v text NOT NULL, writes int NOT NULL)" || exit 1
pos() { psql "\$WEIR_PG_DSN" -Atc "select coalesce((select value from weir.cursors where source='pos'),'0')"; }
kills=0
for round in 1 2 3 4; do
  "$WEIR" run "$root/tests/crash/sync.lua" --set n=3000 >/dev/null 2>&1 &
  pid=\$!
  start=\$(pos)
  for _ in \$(seq 1 400); do   # wait until this run committed a batch (bounded)
    [ "\$(pos)" != "\$start" ] && break
    kill -0 \$pid 2>/dev/null || break
    sleep 0.02
  done
  if kill -9 \$pid 2>/dev/null; then kills=\$((kills+1)); fi
  wait \$pid 2>/dev/null
done
"$WEIR" run "$root/tests/crash/sync.lua" --set n=3000 > "$TMP/final.out" || exit 1
echo "kills=\$kills"
psql "\$WEIR_PG_DSN" -Atc "select count(*), count(distinct id), max(writes), min(id), max(id) from items"
echo "cursor=\$(pos)"
psql "\$WEIR_PG_DSN" -Atc "select count(*) from weir.ledger where scope='items'"
SH
LAST_CMD="pg.sh with crash inner.sh"
timeout 280 "$root/tests/harness/pg.sh" with bash "$TMP/inner.sh" >"$TMP/.out" 2>"$TMP/.err"
RC=$?; OUT=$(cat "$TMP/.out"); ERR=$(cat "$TMP/.err")
expect_rc 0 "the sync survives kill -9 and finishes"
expect_out '^kills=[1-9]' "the sync was killed mid-run at least once"
expect_out '^3000\|3000\|1\|1\|3000$' "every row exactly once (writes = 1), none missing"
expect_out '^cursor=3000$' "the cursor matches the data"
expect_out '^3000$' "one ledger entry per row"
finish
