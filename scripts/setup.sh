#!/usr/bin/env bash
# Installs every Debian package weir needs (idempotent, non-interactive)
# and builds it into ./build.  Usage: scripts/setup.sh [--no-build]
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  # build
  gcc make cmake pkg-config
  # runtime libraries
  liblua5.4-dev libuv1-dev libcurl4-openssl-dev libyajl-dev libssl-dev libsqlite3-dev libhiredis-dev redis-server libpq-dev postgresql
  # tests: unit framework, mock servers, leak checks
  libcmocka-dev python3 valgrind curl ca-certificates
  # benchmarks: baselines run side by side
  lua5.4 lua-cjson nginx-light time nodejs
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
# nodejs may come from outside Debian on some machines: a working `node` is enough
if [[ " ${missing[*]:-} " == *" nodejs "* ]] && command -v node >/dev/null; then
  missing=("${missing[@]/nodejs}")
fi
missing=($(printf '%s\n' "${missing[@]:-}" | grep -v '^$' || true))

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [[ "${1:-}" != "--no-build" ]]; then
  cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build build -j"$(nproc)"
  echo "setup: built $(pwd)/build/weir"
fi
