#!/usr/bin/env bash
# with_mocks.sh CMD ARGS... -- runs CMD with the local HTTP mock up.
#
# Starts tests/mocks/http_mock.py on a free loopback port, waits (bounded)
# until it has written its port file, exports
#   WEIR_MOCK_URL=http://127.0.0.1:PORT
#   WEIR_ENV_ALLOW=WEIR_MOCK_URL,<previous value>   (scripts may read it)
# runs CMD, stops the mock however CMD ends, and exits with CMD's status.
set -u

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
python=/usr/bin/python3
[ -x "$python" ] || python=python3

if [ $# -eq 0 ]; then
    echo "usage: with_mocks.sh CMD [ARGS...]" >&2
    exit 2
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/weir-mocks.XXXXXX") || exit 1
mock_pid=

stop_mock() {
    if [ -n "$mock_pid" ]; then
        kill -TERM "$mock_pid" 2>/dev/null
        wait "$mock_pid" 2>/dev/null
        mock_pid=
    fi
    rm -rf "$tmp"
}
trap stop_mock EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"$python" "$here/http_mock.py" --port 0 --port-file "$tmp/http.port" \
    --exit-with-parent &
mock_pid=$!

# Bounded wait for the port file: up to ~10 s in 20 ms steps; give up early
# when the mock died (e.g. a syntax error) instead of waiting it out.
port=
for _ in $(seq 1 500); do
    if [ -s "$tmp/http.port" ]; then
        port=$(cat "$tmp/http.port")
        break
    fi
    if ! kill -0 "$mock_pid" 2>/dev/null; then
        break
    fi
    sleep 0.02
done
if [ -z "$port" ]; then
    echo "with_mocks.sh: the HTTP mock did not start" >&2
    exit 1
fi

export WEIR_MOCK_URL="http://127.0.0.1:$port"
# A proxy from the environment must not sit between tests and the mock.
export no_proxy="127.0.0.1,localhost${no_proxy:+,$no_proxy}"
export NO_PROXY="127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}"
if [ -n "${WEIR_ENV_ALLOW:-}" ]; then
    export WEIR_ENV_ALLOW="WEIR_MOCK_URL,$WEIR_ENV_ALLOW"
else
    export WEIR_ENV_ALLOW="WEIR_MOCK_URL"
fi

"$@"
status=$?
exit "$status"
