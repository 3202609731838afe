#!/usr/bin/env bash
# redis.sh -- a throwaway redis-server for tests, on loopback only.
#
#   redis.sh start DIR      start a server (free port, unix socket DIR/redis.sock,
#                           no persistence, pid file DIR/redis.pid) and print
#                           "export WEIR_REDIS_URL=redis://127.0.0.1:PORT"
#   redis.sh stop DIR       stop it (SIGTERM via the pid file, bounded wait)
#   redis.sh restart DIR    stop, then start again on the same port
#   redis.sh with CMD ARGS  fresh server in a temp dir; exports WEIR_REDIS_URL and
#                           WEIR_REDIS_SOCKET (unix:///.../redis.sock) and adds them
#                           to WEIR_ENV_ALLOW; also WEIR_REDIS_DIR and
#                           WEIR_REDIS_HARNESS (this script) for restarts; runs CMD;
#                           stops the server; exits with CMD's status
#
# Every wait is a bounded poll on an observable condition (a PONG, a pid that
# is gone), never a fixed sleep.  Set WEIR_REDIS_PERSIST=1 to keep the
# server's default persistence (nothing here needs it).
set -u

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
server=${REDIS_SERVER:-redis-server}
cli=${REDIS_CLI:-redis-cli}

die() {
    echo "redis.sh: $*" >&2
    exit 1
}

# A port nobody listens on right now.  There is a window before redis binds
# it; start retries with a new port when the bind fails.
free_port() {
    /usr/bin/python3 -c '
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

pid_of() {
    [ -f "$1/redis.pid" ] && cat "$1/redis.pid" 2>/dev/null
}

# running PID: the process exists and is not a zombie.  The daemon is
# re-parented to PID 1, which may take its time to reap it: a zombie has
# let go of its port and socket already.
running() {
    local state
    state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)
    if [ -n "$state" ]; then
        [ "$state" != "Z" ]
    else
        kill -0 "$1" 2>/dev/null
    fi
}

alive() {
    local pid
    pid=$(pid_of "$1") || return 1
    [ -n "$pid" ] && running "$pid"
}

# wait_ping DIR PORT: up to ~10 s for the server to answer PING.
wait_ping() {
    local i
    for i in $(seq 1 500); do
        if [ "$("$cli" -h 127.0.0.1 -p "$2" ping 2>/dev/null)" = "PONG" ]; then
            return 0
        fi
        # give up early when the daemon exited (port taken, bad option)
        if [ "$i" -gt 25 ] && ! alive "$1"; then
            return 1
        fi
        sleep 0.02
    done
    return 1
}

launch() {
    local dir=$1 port=$2 persist=() extra=() major
    if [ "${WEIR_REDIS_PERSIST:-0}" != "1" ]; then
        persist=(--save '' --appendonly no)
    fi
    # Redis 7 refuses DEBUG unless enabled; the timeout specs use DEBUG SLEEP
    major=$("$server" --version 2>/dev/null | sed -n 's/.* v=\([0-9]*\)\..*/\1/p')
    if [ -n "$major" ] && [ "$major" -ge 7 ]; then
        extra=(--enable-debug-command local)
    fi
    rm -f "$dir/redis.pid"
    "$server" --bind 127.0.0.1 --port "$port" --protected-mode yes \
        --unixsocket "$dir/redis.sock" --unixsocketperm 700 \
        --daemonize yes --pidfile "$dir/redis.pid" --dir "$dir" \
        --logfile "$dir/redis.log" "${persist[@]}" "${extra[@]}" >/dev/null 2>&1 || return 1
    wait_ping "$dir" "$port"
}

cmd_start() {
    local dir=${1:-} port attempt
    [ -n "$dir" ] || die "usage: redis.sh start DIR"
    mkdir -p "$dir" || die "cannot create $dir"
    dir=$(cd "$dir" && pwd)
    if alive "$dir"; then
        die "a server from $dir is already running (pid $(pid_of "$dir"))"
    fi
    port=${WEIR_REDIS_PORT:-}
    for attempt in 1 2 3 4 5; do
        [ -n "$port" ] || port=$(free_port) || die "cannot find a free port"
        if launch "$dir" "$port"; then
            echo "$port" >"$dir/port"
            echo "export WEIR_REDIS_URL=redis://127.0.0.1:$port"
            return 0
        fi
        cmd_stop "$dir" >/dev/null 2>&1
        [ -n "${WEIR_REDIS_PORT:-}" ] && break   # a fixed port: no point retrying
        port=
    done
    echo "redis.sh: redis-server did not answer PING; its log:" >&2
    tail -n 20 "$dir/redis.log" >&2 2>/dev/null
    exit 1
}

cmd_stop() {
    local dir=${1:-} pid i
    [ -n "$dir" ] || die "usage: redis.sh stop DIR"
    pid=$(pid_of "$dir") || return 0
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null
    for i in $(seq 1 500); do
        running "$pid" || break
        sleep 0.02
    done
    if running "$pid"; then
        kill -KILL "$pid" 2>/dev/null
    fi
    rm -f "$dir/redis.pid"
}

cmd_restart() {
    local dir=${1:-} port
    [ -n "$dir" ] || die "usage: redis.sh restart DIR"
    port=$(cat "$dir/port" 2>/dev/null) || die "no server was started from $dir"
    cmd_stop "$dir"
    WEIR_REDIS_PORT=$port cmd_start "$dir"
}

cmd_with() {
    local dir line status
    [ $# -gt 0 ] || die "usage: redis.sh with CMD [ARGS...]"
    dir=$(mktemp -d "${TMPDIR:-/tmp}/weir-redis.XXXXXX") || die "mktemp failed"
    trap 'cmd_stop "$dir"; rm -rf "$dir"' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    line=$(cmd_start "$dir") || exit 1
    export WEIR_REDIS_URL=${line#export WEIR_REDIS_URL=}
    export WEIR_REDIS_DIR=$dir
    export WEIR_REDIS_HARNESS=$here/redis.sh
    export WEIR_REDIS_SOCKET=unix://$dir/redis.sock
    export WEIR_ENV_ALLOW=WEIR_REDIS_URL,WEIR_REDIS_SOCKET${WEIR_ENV_ALLOW:+,$WEIR_ENV_ALLOW}
    "$@"
    status=$?
    exit "$status"
}

case "${1:-}" in
start) shift; cmd_start "$@" ;;
stop) shift; cmd_stop "$@" ;;
restart) shift; cmd_restart "$@" ;;
with) shift; cmd_with "$@" ;;
*)
    echo "usage: redis.sh start DIR | stop DIR | restart DIR | with CMD [ARGS...]" >&2
    exit 2
    ;;
esac
