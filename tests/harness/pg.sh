#!/usr/bin/env bash
# pg.sh -- a throwaway PostgreSQL server for tests (Debian's PostgreSQL 15).
#
#   pg.sh start DIR     initdb in DIR/data, listen on a unix socket in DIR
#                       and on 127.0.0.1:<free port>, fsync off; waits until
#                       the server accepts connections (bounded) and prints
#                         export WEIR_PG_DSN='host=127.0.0.1 port=P ...'
#                         export WEIR_PG_DSN_UNIX='host=DIR port=P ...'
#   pg.sh stop DIR      fast shutdown (idempotent)
#   pg.sh restart DIR   fast restart on the same port (clients are cut off)
#   pg.sh with CMD ...  fresh server in a temp dir; exports WEIR_PG_DSN and
#                       WEIR_PG_DSN_UNIX, adds them to WEIR_ENV_ALLOW, runs
#                       CMD, stops and removes the server, exits with CMD's
#                       status.
#
# PostgreSQL refuses to run as root: as root, the server runs as the system
# user "weirtest" (created on first use) through runuser, which works
# non-interactively in CI.  The database superuser is always "weir" with
# trust authentication: the server is reachable from this machine only.
set -u

PG_BIN=${WEIR_PG_BIN:-}
if [ -z "$PG_BIN" ]; then
    for d in /usr/lib/postgresql/*/bin; do
        [ -x "$d/initdb" ] && PG_BIN=$d
    done
fi
if [ -z "$PG_BIN" ] || [ ! -x "$PG_BIN/initdb" ]; then
    echo "pg.sh: no PostgreSQL server found (install postgresql, or set WEIR_PG_BIN)" >&2
    exit 1
fi
RUN_USER=weirtest

die() { echo "pg.sh: $*" >&2; exit 1; }

# as_pg CMD ARGS...: runs CMD as the server's user.
as_pg() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u "$RUN_USER" -- "$@"
    else
        "$@"
    fi
}

ensure_user() {
    [ "$(id -u)" -eq 0 ] || return 0
    id "$RUN_USER" >/dev/null 2>&1 && return 0
    useradd --system --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin "$RUN_USER" 2>/dev/null ||
        id "$RUN_USER" >/dev/null 2>&1 ||   # created concurrently
        die "cannot create the system user $RUN_USER"
}

free_port() {
    python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

print_env() {
    local dir=$1 port
    port=$(cat "$dir/port")
    echo "export WEIR_PG_DSN='host=127.0.0.1 port=$port user=weir dbname=postgres'"
    echo "export WEIR_PG_DSN_UNIX='host=$dir port=$port user=weir dbname=postgres'"
}

# Bounded wait (about 30 s) until the server accepts connections.
wait_ready() {
    local dir=$1 port i
    port=$(cat "$dir/port")
    for i in $(seq 1 300); do
        if "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$port" -t 1; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

pg_start() {
    local dir=$1 attempt port
    [ -n "$dir" ] || die "usage: pg.sh start DIR"
    mkdir -p "$dir" || die "cannot create $dir"
    dir=$(cd "$dir" && pwd)
    # the socket path must fit in sun_path (107 bytes)
    [ ${#dir} -le 80 ] || die "directory path too long for a unix socket: $dir"
    ensure_user
    if [ "$(id -u)" -eq 0 ]; then
        chown "$RUN_USER" "$dir" || die "cannot chown $dir"
        chmod 0755 "$dir"
        # every parent must be searchable by the server's user
        as_pg test -x "$dir" ||
            die "the server's user $RUN_USER cannot reach $dir (a parent directory is not searchable): use a directory directly under /tmp"
    fi
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        as_pg "$PG_BIN/initdb" -D "$dir/data" -U weir --auth=trust -E UTF8 \
            --locale=C --no-sync >"$dir/initdb.log" 2>&1 ||
            { cat "$dir/initdb.log" >&2; die "initdb failed in $dir"; }
    fi
    # A free port can be taken between the probe and the bind: retry.
    for attempt in 1 2 3; do
        port=$(free_port) || die "cannot find a free port"
        echo "$port" >"$dir/port"
        cat >"$dir/data/weir.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 60
shared_buffers = 32MB
log_min_messages = warning
CONF
        if ! grep -q "^include_if_exists = 'weir.conf'" "$dir/data/postgresql.conf"; then
            echo "include_if_exists = 'weir.conf'" >>"$dir/data/postgresql.conf"
        fi
        if as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
                start >/dev/null 2>&1 && wait_ready "$dir"; then
            print_env "$dir"
            return 0
        fi
        as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1
    done
    tail -n 20 "$dir/server.log" >&2 2>/dev/null
    die "the server in $dir did not start"
}

pg_stop() {
    local dir=$1
    [ -n "$dir" ] || die "usage: pg.sh stop DIR"
    [ -f "$dir/data/postmaster.pid" ] || return 0
    as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop >/dev/null 2>&1 ||
        as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1
    return 0
}

pg_restart() {
    local dir=$1
    [ -n "$dir" ] || die "usage: pg.sh restart DIR"
    as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -m fast -w -t 30 \
        restart >/dev/null 2>&1 || die "restart failed in $dir"
    wait_ready "$dir" || die "the server in $dir did not come back"
}

pg_with() {
    local dir status
    [ $# -gt 0 ] || die "usage: pg.sh with CMD [ARGS...]"
    dir=$(mktemp -d /tmp/weir-pg.XXXXXX) || die "mktemp failed"
    trap 'pg_stop "$dir"; rm -rf "$dir"' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    eval "$(pg_start "$dir")" || exit 1
    [ -n "${WEIR_PG_DSN:-}" ] || exit 1
    export WEIR_PG_DSN WEIR_PG_DSN_UNIX WEIR_PG_DIR="$dir"
    export WEIR_ENV_ALLOW="WEIR_PG_DSN,WEIR_PG_DSN_UNIX${WEIR_ENV_ALLOW:+,$WEIR_ENV_ALLOW}"
    "$@"
    status=$?
    exit "$status"
}

cmd=${1:-}
shift || true
case "$cmd" in
    start) pg_start "${1:-}" ;;
    stop) pg_stop "${1:-}" ;;
    restart) pg_restart "${1:-}" ;;
    with) pg_with "$@" ;;
    *) echo "usage: pg.sh start DIR | stop DIR | restart DIR | with CMD [ARGS...]" >&2; exit 2 ;;
esac
