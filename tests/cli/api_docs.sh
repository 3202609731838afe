#!/usr/bin/env bash
# The Lua API reference is checked against the code: every function a
# built-in module exports must have a "### module.function" heading in
# docs/lua-api.md (or its source fragments in docs/lua-api/).
source "$(dirname "$0")/testlib.bash" "$@"
root=$(cd "$(dirname "$0")/../.." && pwd)

write list.lua <<'LUA'
local names = {}
for _, mod in ipairs{"weir", "weir.http", "weir.json", "weir.crypto", "weir.log", "weir.task", "weir.ledger", "weir.cursor"} do
  local short = mod:match("[^.]+$")
  for k, v in pairs(require(mod)) do
    if type(v) == "function" then names[#names + 1] = short .. "." .. k end
  end
end
table.sort(names)
return table.concat(names, "\n")
LUA
run_weir run "$TMP/list.lua"
expect_rc 0 "listing module functions"
docs=$(cat "$root"/docs/lua-api.md)
names=$(printf '%s' "$OUT" | python3 -c 'import json,sys; print(json.loads(sys.stdin.read()))')
count=0
for n in $names; do
  count=$((count + 1))
  # a heading naming the function, e.g. "### json.encode(v [, opts])"
  if printf '%s\n' "$docs" | grep -Eq "^#{2,4} .*\b${n//./\\.}\b"; then pass
  else fail "docs/lua-api.md has no heading for $n"; fi
done
if [ "$count" -ge 20 ]; then pass; else fail "expected at least 20 exported functions, got $count"; fi
# docs/lua-api.md is generated from docs/lua-api/*.md and must be current
cp -r "$root/docs" "$TMP/docs-copy"
mkdir -p "$TMP/gen/scripts" && cp "$root/scripts/gen-lua-api.sh" "$TMP/gen/scripts/"
cp -r "$root/docs" "$TMP/gen/docs"
( cd "$TMP/gen" && scripts/gen-lua-api.sh )
if cmp -s "$TMP/gen/docs/lua-api.md" "$root/docs/lua-api.md"; then pass
else fail "docs/lua-api.md is stale: run scripts/gen-lua-api.sh"; fi
finish
