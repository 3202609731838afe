#!/usr/bin/env bash
# demo.sh -- weir's main job, end to end and offline: sync Microsoft 365
# users through the msgraph connector against the local Graph mock, while
# the mock throttles (429 + Retry-After), fails (503) and expires the
# access token midway, then sync again incrementally after users changed.
#
#   scripts/demo.sh                 install, build ./build, run the demo
#   scripts/demo.sh --skip-setup    use an existing binary ($WEIR or build/weir)
#
# Exits with weir's status.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  echo "usage: scripts/demo.sh [--skip-setup]   (WEIR=path/to/weir to choose the binary)" >&2
  exit 2
}

skip_setup=0
for arg in "$@"; do
  case "$arg" in
    --skip-setup) skip_setup=1 ;;
    -h|--help) usage ;;
    *) echo "demo.sh: unknown argument '$arg'" >&2; usage ;;
  esac
done

if [ "$skip_setup" -eq 0 ]; then
  scripts/setup.sh
fi
WEIR=${WEIR:-build/weir}
if [ ! -x "$WEIR" ]; then
  echo "demo.sh: no weir binary at '$WEIR' (run without --skip-setup, or set WEIR=)" >&2
  exit 1
fi
python=/usr/bin/python3
[ -x "$python" ] || python=python3

# The mock's default app registration (tests/mocks/README.md).
TENANT=weir-test-tenant
CLIENT_ID=00000000-0000-4000-8000-00000000c11e
CLIENT_SECRET='mock-secret-Q8~weir.graph'

tmp=$(mktemp -d "${TMPDIR:-/tmp}/weir-demo.XXXXXX")
mock_pid=
cleanup() {
  if [ -n "$mock_pid" ]; then
    kill -TERM "$mock_pid" 2>/dev/null || true
    wait "$mock_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"$python" tests/mocks/graph_mock.py --port 0 --port-file "$tmp/graph.port" \
  --users 250 --tenant "$TENANT" --client-id "$CLIENT_ID" --client-secret "$CLIENT_SECRET" \
  --exit-with-parent &
mock_pid=$!

# Bounded wait for the port file (~10 s); stop early if the mock died.
port=
for _ in $(seq 1 500); do
  if [ -s "$tmp/graph.port" ]; then port=$(cat "$tmp/graph.port"); break; fi
  kill -0 "$mock_pid" 2>/dev/null || break
  sleep 0.02
done
if [ -z "$port" ]; then
  echo "demo.sh: the Graph mock did not start" >&2
  exit 1
fi
url="http://127.0.0.1:$port"

# control PATH [JSON] -- calls the mock's control API, prints the answer.
control() {
  "$python" - "$url/_control/$1" "${2:-}" <<'PY'
import sys, urllib.request
url, body = sys.argv[1], sys.argv[2]
req = urllib.request.Request(url, data=body.encode() if body else None,
                             headers={"Content-Type": "application/json"},
                             method="POST" if body else "GET")
print(urllib.request.urlopen(req, timeout=10).read().decode())
PY
}

# The weather: the first delta request is throttled (429, Retry-After 1 s),
# its retry meets a 503, the next page goes through, and the access token
# expires just before the one after (Graph answers 401 there).
control faults '{"path": "/v1.0/users/delta", "sequence": [
  {"status": 429, "retry_after": "1"}, {"status": 503},
  {"pass": true}, {"expire_tokens": true}]}' >/dev/null

echo "== Graph mock on $url: 250 users; faults: 429 (Retry-After 1 s), 503, token expiry"
echo "== weir run examples/m365_users.lua"
set +e
M365_CLIENT_SECRET="$CLIENT_SECRET" WEIR_ENV_ALLOW=M365_CLIENT_SECRET \
  "$WEIR" run examples/m365_users.lua \
    --set tenant="$TENANT" --set client_id="$CLIENT_ID" \
    --set graph_url="$url/v1.0" --set token_url="$url/{tenant}/oauth2/v2.0/token" \
    --set demo_control_url="$url/_control" \
    >"$tmp/out" 2>"$tmp/log"
status=$?
set -e

# What the script printed, then the engine's log lines, condensed.
grep -v '^{' "$tmp/out" || true
echo "== engine log (what the connector rode through)"
"$python" - "$tmp/log" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    try:
        e = json.loads(line)
    except ValueError:
        print("  " + line.rstrip())
        continue
    extra = {k: v for k, v in e.items() if k not in ("time", "level", "recipe", "job", "msg", "url")}
    print("  %-5s %s %s" % (e.get("level"), e.get("msg"),
                            " ".join("%s=%s" % kv for kv in sorted(extra.items()))))
PY
echo "== summary (returned by the script)"
grep '^{' "$tmp/out" | tail -n 1 | "$python" -m json.tool || true
echo "== mock: what it saw"
control stats | "$python" -c '
import json, sys
s = json.load(sys.stdin)
print("  requests:", json.dumps(s["requests"], sort_keys=True))
print("  tokens issued:", s["tokens_issued"], " max concurrent requests:", s["max_concurrent"])
for g in s["retry_gaps"]:
    told = "Retry-After %g s" % g["retry_after"] if g["retry_after"] is not None else "no Retry-After: backoff"
    print("  retry after %s: waited %.3f s (%s)" % (g["status"] or "a dropped connection", g["gap"], told))
'
echo "== weir exited with $status"
exit "$status"
