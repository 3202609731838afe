#!/usr/bin/env bash
# bench/http_fanout/run.sh -- HTTP fan-out: BENCH_HTTP_N GETs (default
# 20,000) of a small static file, BENCH_HTTP_CONCURRENCY (64) at a time,
# against a private nginx on a free 127.0.0.1 port:
#   weir  (weir.task.spawn workers + weir.http)
#   curl  (--parallel --parallel-max 64, URLs from a -K config file)
#   node  (global fetch, 64 async workers)
# Prints wall time, requests/s and peak RSS of each process and the
# ratios weir/curl (target >= 1.0x) and weir/node (target >= 2x).  Fails
# only when a side did not get N x 200.  Loopback only; nginx is ours
# and is stopped on exit.  Usually run through bench/run.sh.
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib/common.sh"

: "${BENCH_SUMMARY:=/dev/null}"
if [ -n "${BENCH_HTTP_N:-}" ]; then N=$BENCH_HTTP_N
elif [ -n "${BENCH_N:-}" ] && [ "$BENCH_N" -lt 20000 ]; then N=$BENCH_N
else N=20000; fi
CONC=${BENCH_HTTP_CONCURRENCY:-64}
REPEAT=${BENCH_REPEAT:-3}
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}

bench_ensure_time
bench_need curl node python3
[ -x "$NGINX" ] || bench_die "nginx is missing (apt-get install nginx-light)"
[ -n "${WEIR_BIN:-}" ] || bench_build_weir

work=$(mktemp -d "${TMPDIR:-/tmp}/weir-bench-http.XXXXXX")
nginx_pid=
cleanup() {
  if [ -n "$nginx_pid" ]; then
    kill -QUIT "$nginx_pid" 2>/dev/null
    wait "$nginx_pid" 2>/dev/null
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# nginx's workers drop to `nobody` when started as root: they must be
# able to read the document root.
chmod 755 "$work"
mkdir -p "$work/www" "$work/tmp"
# 512 bytes of deterministic text.
python3 -c 'import sys; sys.stdout.write(("weir bench static file " * 40)[:511] + "\n")' \
  >"$work/www/small.txt"
size=$(stat -c %s "$work/www/small.txt")

port=$(python3 -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
url="http://127.0.0.1:$port/small.txt"

cat >"$work/nginx.conf" <<CONF
worker_processes 1;
daemon off;
master_process on;
pid $work/nginx.pid;
error_log $work/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nodelay on;
  keepalive_requests 1000000;
  keepalive_timeout 60s;
  client_body_temp_path $work/tmp/body;
  proxy_temp_path $work/tmp/proxy;
  fastcgi_temp_path $work/tmp/fastcgi;
  uwsgi_temp_path $work/tmp/uwsgi;
  scgi_temp_path $work/tmp/scgi;
  types { text/plain txt; }
  server {
    listen 127.0.0.1:$port;
    root $work/www;
    location / { }
  }
}
CONF

"$NGINX" -p "$work" -c "$work/nginx.conf" -e "$work/error.log" \
  >"$work/nginx.out" 2>&1 &
nginx_pid=$!

# Wait (bounded: 5 s) until nginx answers.
for _ in $(seq 1 50); do
  if curl -sf -o /dev/null "$url"; then break; fi
  kill -0 "$nginx_pid" 2>/dev/null ||
    { cat "$work/nginx.out" "$work/error.log" >&2 2>/dev/null; bench_die "nginx did not start"; }
  sleep 0.1
done
curl -sf -o /dev/null "$url" || bench_die "nginx does not answer on $url"

# curl's config: one url + output pair per request.
awk -v n="$N" -v u="$url" 'BEGIN {
  for (i = 0; i < n; i++) printf "url = \"%s\"\noutput = \"/dev/null\"\n", u }' \
  >"$work/curl.cfg"

bench_log "http: $N GETs of $url ($size bytes), $CONC at a time, best of $REPEAT"

# try_side NAME CMD... : one measured run; the fastest run of each side
# is kept as $work/NAME.{out,err,rss,wall,rc}.
try_side() {
  local name=$1; shift
  bench_log "http: $name (run $r/$REPEAT, load $(bench_loadavg))"
  bench_measure "$work/$name.try" "$@" ||
    { cat "$work/$name.try.err" >&2; bench_die "$name failed (exit $(cat "$work/$name.try.rc"))"; }
  local got
  if [ "$name" = curl ]; then got=$(grep -c '^200$' "$work/$name.try.out")
  else got=$(bench_json_get "$work/$name.try.out" status_200); fi
  # Every run must be complete, not only the fastest one.
  [ "$got" = "$N" ] || bench_die "$name got $got x 200 in run $r, expected $N"
  bench_keep_best "$name" "$(cat "$work/$name.try.wall")" lower
}

# Sides are interleaved round by round so that a burst of load from
# elsewhere does not fall on one side only.
for r in $(seq 1 "$REPEAT"); do
  try_side weir "$WEIR_BIN" run "$here/weir_fanout.lua" \
    --set "url=$url" --set "n=$N" --set "concurrency=$CONC"
  try_side curl curl -s --parallel --parallel-max "$CONC" -K "$work/curl.cfg" \
    -w '%{http_code}\n'
  try_side node node "$here/node_fanout.mjs" "$url" "$N" "$CONC"
done

w_ok=$(bench_json_get "$work/weir.out" status_200)
c_ok=$(grep -c '^200$' "$work/curl.out")
n_ok=$(bench_json_get "$work/node.out" status_200)

w_wall=$(cat "$work/weir.wall"); c_wall=$(cat "$work/curl.wall"); n_wall=$(cat "$work/node.wall")
rate() { awk -v n="$N" -v s="$1" 'BEGIN { printf "%.0f\n", n / s }'; }
w_rate=$(rate "$w_wall"); c_rate=$(rate "$c_wall"); n_rate=$(rate "$n_wall")
w_in=$(bench_json_get "$work/weir.out" seconds)
n_in=$(bench_json_get "$work/node.out" seconds)
r_curl=$(bench_ratio "$w_rate" "$c_rate")
r_node=$(bench_ratio "$w_rate" "$n_rate")

printf '\n== http fan-out: %s GETs of a %s-byte file, %s concurrent, nginx on 127.0.0.1, best of %s ==\n' \
  "$N" "$size" "$CONC" "$REPEAT"
row() { # side name prefix in-process
  printf '%-18s %8s %11s %9s %12s %7s %13s\n' "$1" "$(cat "$work/$2.wall")" "$3" \
    "$(cat "$work/$2.cpu")" "$(bench_kib_to_mib "$(cat "$work/$2.rss")")" "$4" "$5"
}
printf '%-18s %8s %11s %9s %12s %7s %13s\n' side wall_s requests/s cpu_s peak_RSS_MiB 200s in-process_s
row weir weir "$w_rate" "$w_ok" "$(printf '%.3f' "$w_in")"
row "curl --parallel" curl "$c_rate" "$c_ok" "-"
row "node fetch" node "$n_rate" "$n_ok" "$(printf '%.3f' "$n_in")"
printf 'ratio weir/curl (requests/s): %sx (target >= 1.0x)\n' "$r_curl"
printf 'ratio weir/node (requests/s): %sx (target >= 2x)\n' "$r_node"
printf '(requests/s = N / wall time of the whole process, startup included;\n'
printf ' cpu_s = user+system CPU of the client process, nginx not included;\n'
printf ' in-process_s is the time the script itself measured around the fan-out)\n'

bench_row http weir "$w_wall" "$w_rate" requests/s "$(cat "$work/weir.rss")" \
  "weir/curl ${r_curl}x (>= 1.0x), weir/node ${r_node}x (>= 2x)"
bench_row http "curl --parallel" "$c_wall" "$c_rate" requests/s "$(cat "$work/curl.rss")" ""
bench_row http "node fetch" "$n_wall" "$n_rate" requests/s "$(cat "$work/node.rss")" ""

fail=0
for side in "weir:$w_ok" "curl:$c_ok" "node:$n_ok"; do
  if [ "${side#*:}" != "$N" ]; then
    printf '[bench] error: %s got %s x 200, expected %s\n' "${side%%:*}" "${side#*:}" "$N" >&2
    fail=1
  fi
done
[ "$fail" = 0 ] || exit 1
printf 'every side got %s x 200\n' "$N"
