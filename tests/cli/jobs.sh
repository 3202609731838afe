#!/usr/bin/env bash
# The recipe runner: --once / --job, retries with backoff, weir.retry
# {after}, weir.fail, timeouts, dead letters and replay, the daemon with
# SIGTERM (in-flight jobs released), and a worker killed with -9 whose
# item another run reclaims after the lease.
source "$(dirname "$0")/testlib.bash" "$@"
root=$(cd "$(dirname "$0")/../.." && pwd)
R="$root/tests/jobs/basic"
export WEIR_DATA_DIR="$TMP/data"

runs_json() { "$WEIR" runs jobs-basic --limit 200 --json 2>/dev/null; }
# py EXPR over the list of run rows (oldest first) -> prints the result
py_runs() {
    runs_json | python3 -c "import json,sys
rows=[json.loads(l) for l in sys.stdin if l.strip()][::-1]
for r in rows:
    for k in ('attempt','started_at','ended_at','read','written'): r[k]=int(r[k]) if r[k] is not None else None
print($1)"
}

# --- --once: every scheduled job (tick, flaky) once, retries included
run_weir run "$R" --once
expect_rc 0 "--once succeeds when every scheduled job eventually succeeds"
expect_err '3 started|4 started' "summary line"
got=$(py_runs "[ (r['job'], r['attempt'], r['status']) for r in rows if r['job']=='flaky']")
if [ "$got" = "[('flaky', 1, 'retrying'), ('flaky', 2, 'retrying'), ('flaky', 3, 'succeeded')]" ]; then pass; else fail "flaky attempts: $got"; fi
# backoff without jitter: 200 ms then 400 ms (lower bounds: the queue never runs an item early)
gaps=$(py_runs "[ b['started_at']-a['started_at'] for a,b in zip([r for r in rows if r['job']=='flaky'], [r for r in rows if r['job']=='flaky'][1:]) ]")
if python3 -c "g=$gaps; assert g[0]>=200 and g[1]>=400, g"; then pass; else fail "backoff gaps $gaps"; fi
run_weir cursor show jobs-basic ticks
expect_out 'value=1' "the successful tick committed its cursor"

# --- dead letter after max_attempts, exit 1
run_weir run "$R" --job broken
expect_rc 1 "a job that ends dead-lettered fails the run"
run_weir dlq list jobs-basic
expect_out 'jobs-basic/broken  attempts=2  error=.*always broken: ok' "the dead letter keeps attempts and the error"
id=$(printf '%s\n' "$OUT" | awk '/broken/ {print $1; exit}')
run_weir dlq show "$id"
expect_out '"payload":null' "show prints the item as JSON"

# --- weir.fail: dead at the first attempt, fields kept
run_weir run "$R" --job permanent
expect_rc 1 "permanent failure"
got=$(py_runs "[ (r['attempt'], r['status']) for r in rows if r['job']=='permanent']")
if [ "$got" = "[(1, 'dead')]" ]; then pass; else fail "weir.fail is not retried: $got"; fi

# --- weir.retry{after}: exactly that delay instead of the 5 s backoff
run_weir run "$R" --job later
expect_rc 0 "retry after"
gap=$(py_runs "[ b['started_at']-a['started_at'] for a,b in zip([r for r in rows if r['job']=='later'], [r for r in rows if r['job']=='later'][1:]) ][0]")
if python3 -c "assert 300 <= $gap < 5000, $gap"; then pass; else fail "retry after 0.3 s waited ${gap} ms"; fi

# --- timeout: killed, retried, then dead
run_weir run "$R" --job slow
expect_rc 1 "a job that always times out ends dead"
expect_err 'job timeout: ran longer than 0.3 s' "the timeout is reported"

# --- payload and identity
run_weir run "$R" --job echo --payload '{"x":42}'
expect_rc 0 "payload reaches the handler"

# --- replay: back to the queue, runs again (against the current scripts)
run_weir dlq replay "$id"
expect_rc 0 "replay"
run_weir dlq list jobs-basic
if printf '%s\n' "$OUT" | grep -q "^$id "; then fail "replayed item still in the DLQ"; else pass; fi
run_weir run "$R" --job echo --payload '{"x":42}' --set mode=replayed
got=$(py_runs "[ r['trigger'] for r in rows if r['job']=='broken'][-1]")
if [ "$got" = "replay" ]; then pass; else fail "the replayed item ran (trigger=$got)"; fi

# --- params: unknown and bad values are refused
run_weir run "$R" --once --set nope=1
expect_rc 1 "unknown param"
expect_err "nope" "names the param"

# --- daemon + SIGTERM: a sleeping job is released after the grace period
"$WEIR" run "$R" --grace 300ms --lease 600ms >"$TMP/d.out" 2>"$TMP/d.err" &
pid=$!
ok=0
for _ in $(seq 1 100); do   # wait until the daemon has run tick twice (bounded)
    n=$(py_runs "len([r for r in rows if r['job']=='tick' and r['trigger']=='every'])" 2>/dev/null || echo 0)
    if [ "${n:-0}" -ge 2 ]; then ok=1; break; fi
    sleep 0.1
done
if [ $ok = 1 ]; then pass; else fail "the every=1s trigger did not fire twice"; fi
kill -TERM $pid
wait $pid
rc=$?
if [ $rc = 0 ]; then pass; else fail "SIGTERM exits 0 (got $rc)"; cat "$TMP/d.err" >&2; fi
if grep -q "SIGTERM: stopping" "$TMP/d.err"; then pass; else fail "SIGTERM logged"; fi

# --- SIGTERM with a job in flight: released to the queue after the grace period
"$WEIR" run "$R" --job hold --grace 300ms >"$TMP/h.out" 2>"$TMP/h.err" &
pid=$!
for _ in $(seq 1 100); do grep -q '"job":"hold","msg":"job started"' "$TMP/h.err" && break; sleep 0.05; done
kill -TERM $pid; wait $pid
got=$(py_runs "[ r['status'] for r in rows if r['job']=='hold']")
if [ "$got" = "['released']" ]; then pass; else fail "the in-flight job was released: $got"; fi
if grep -q "1 released" "$TMP/h.err"; then pass; else fail "summary counts the release"; fi

# --- on a terminal: a live progress line instead of info-level JSON logs
if command -v script >/dev/null; then
    script -qc "timeout -s TERM 3 '$WEIR' run '$R' --lease 1s --grace 200ms" /dev/null > "$TMP/tty.out" 2>&1
    if grep -q '\[weir\] [0-9]*s  running [0-9]*  done [0-9]*' "$TMP/tty.out"; then pass; else fail "no progress line on a terminal"; fi
    if grep -q '"level":"info"' "$TMP/tty.out"; then fail "info JSON lines on a terminal"; else pass; fi
fi

# --- kill -9 mid-job: the item is reclaimed after its lease by another run
"$WEIR" run "$R" --job sleeper --payload '{"s":30}' --lease 600ms >"$TMP/k.out" 2>"$TMP/k.err" &
pid=$!
for _ in $(seq 1 100); do grep -q '"job":"sleeper","msg":"job started"' "$TMP/k.err" && break; sleep 0.05; done
kill -9 $pid; wait $pid 2>/dev/null
"$WEIR" run "$R" --lease 600ms --grace 200ms >"$TMP/r.out" 2>"$TMP/r.err" &
pid=$!
seen=0
for _ in $(seq 1 100); do
    if [ "$(py_runs "len([r for r in rows if r['job']=='sleeper' and r['status']=='succeeded'])" 2>/dev/null)" = 1 ]; then seen=1; break; fi
    sleep 0.1
done
kill -TERM $pid; wait $pid
if [ $seen = 1 ]; then pass; else fail "the item of the killed worker was not reclaimed"; cat "$TMP/r.err" >&2; fi
got=$(py_runs "[ r['attempt'] for r in rows if r['job']=='sleeper']")
if [ "$got" = "[1]" ]; then pass; else fail "the reclaimed run keeps its attempt number: $got"; fi
finish
