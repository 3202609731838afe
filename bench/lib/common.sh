# shellcheck shell=bash
# bench/lib/common.sh -- helpers shared by the benchmark runners.
# Sourced, not executed.  Every runner gets:
#   BENCH_ROOT   the repository root
#   WEIR_BIN     the weir binary (built in Release by bench_build_weir)
#   BENCH_SUMMARY  a TSV file the runners append rows to; run.sh prints it
# and the functions below.  Numbers are printed, never asserted: the only
# failures are wrong results (a checksum or a status count that differs).

BENCH_ROOT=${BENCH_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}

bench_log() { printf '[bench] %s\n' "$*" >&2; }
bench_die() { printf '[bench] error: %s\n' "$*" >&2; exit 1; }

# Peak RSS comes from GNU time's %M; Debian ships it as the `time` package.
bench_ensure_time() {
  [ -x /usr/bin/time ] && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    bench_log "installing Debian's time package for peak RSS"
    apt-get install -y time >/dev/null 2>&1 ||
      { apt-get update >/dev/null 2>&1 && apt-get install -y time >/dev/null 2>&1; } ||
      bench_die "could not install the time package"
  else
    bench_die "/usr/bin/time is missing (apt-get install time)"
  fi
}

bench_need() {
  local cmd
  for cmd in "$@"; do
    command -v "$cmd" >/dev/null || bench_die "$cmd is required but not installed"
  done
}

# Builds weir in Release into build-bench unless WEIR_BIN names a binary.
# cmake --build is incremental, so this is cheap when nothing changed.
bench_build_weir() {
  if [ -n "${WEIR_BIN:-}" ]; then
    [ -x "$WEIR_BIN" ] || bench_die "WEIR_BIN=$WEIR_BIN is not executable"
    return 0
  fi
  local dir=${BENCH_BUILD_DIR:-$BENCH_ROOT/build-bench}
  if [ ! -f "$dir/CMakeCache.txt" ]; then
    bench_log "configuring Release build in $dir"
    mkdir -p "$dir"
    cmake -S "$BENCH_ROOT" -B "$dir" -DCMAKE_BUILD_TYPE=Release \
      -DWEIR_TESTS=OFF >"$dir/bench-configure.log" 2>&1 ||
      { cat "$dir/bench-configure.log" >&2; bench_die "cmake configure failed"; }
  fi
  bench_log "building weir (Release)"
  if ! cmake --build "$dir" -j2 --target weir >"$dir/bench-build.log" 2>&1; then
    tail -20 "$dir/bench-build.log" >&2
    # The tree is edited by several people at once: a build broken by an
    # unrelated file should not stop a benchmark of what did build, but
    # the numbers must say they come from an older binary.
    [ -x "$dir/weir" ] || bench_die "weir build failed ($dir/bench-build.log)"
    bench_log "WARNING: weir build failed ($dir/bench-build.log); measuring the" \
      "existing $dir/weir built $(date -r "$dir/weir" '+%F %T')"
  fi
  WEIR_BIN=$dir/weir
}

# bench_measure PREFIX CMD ARGS...
# Runs CMD with stdout to PREFIX.out and stderr to PREFIX.err, recording
# peak RSS in KiB (PREFIX.rss, GNU time %M), CPU seconds user+system
# (PREFIX.cpu, GNU time %U + %S: the process and its threads, not its
# children's servers), wall seconds (PREFIX.wall, nanosecond clock around
# the whole process) and the exit status (PREFIX.rc).  Returns CMD's
# status.
bench_measure() {
  local prefix=$1; shift
  local t0 t1 rc
  t0=$(date +%s%N)
  /usr/bin/time -f 'RSS %M CPU %U %S' -o "$prefix.time" "$@" \
    >"$prefix.out" 2>"$prefix.err"
  rc=$?
  t1=$(date +%s%N)
  echo "$rc" >"$prefix.rc"
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f\n", (b - a) / 1e9 }' \
    >"$prefix.wall"
  # GNU time may put "Command exited with non-zero status N" first.
  awk '$1 == "RSS" { print $2 }' "$prefix.time" >"$prefix.rss"
  awk '$1 == "RSS" { printf "%.2f\n", $4 + $5 }' "$prefix.time" >"$prefix.cpu"
  return "$rc"
}

# bench_keep_best NAME VALUE higher|lower
# After a try measured into $work/NAME.try.*, keeps its files as
# $work/NAME.* when VALUE beats the best so far (runs are interleaved
# between sides and the best kept: the machine is shared, and the best
# of a few runs is the least disturbed one).  Needs $work.
bench_keep_best() {
  local name=$1 value=$2 dir=$3 best f
  : "${work:?bench_keep_best needs \$work}"
  best=$(cat "$work/$name.best" 2>/dev/null)
  if [ -z "$best" ] || awk -v a="$value" -v b="$best" -v d="$dir" \
       'BEGIN { exit !(d == "higher" ? a > b : a < b) }'; then
    echo "$value" >"$work/$name.best"
    for f in out err rss cpu wall rc time; do mv "$work/$name.try.$f" "$work/$name.$f"; done
  fi
}

# bench_loadavg: the 1-minute load average, printed with the results
# because other work on the machine skews every number.
bench_loadavg() { cut -d' ' -f1 /proc/loadavg; }

# bench_json_get FILE KEY: KEY of the last JSON object line in FILE.
bench_json_get() {
  python3 - "$1" "$2" <<'PY'
import json, sys
lines = [l for l in open(sys.argv[1], encoding="utf-8") if l.strip().startswith("{")]
if not lines:
    sys.exit("no JSON object in " + sys.argv[1])
v = json.loads(lines[-1]).get(sys.argv[2])
print("" if v is None else v)
PY
}

# bench_ratio A B -> A/B with two decimals ("n/a" when B is 0 or empty).
bench_ratio() {
  awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "n/a"; else printf "%.2f\n", a / b }'
}

bench_kib_to_mib() {
  awk -v k="$1" 'BEGIN { printf "%.1f\n", k / 1024 }'
}

# bench_row BENCH SIDE SECONDS RATE UNIT RSS_KIB NOTE -> one summary row.
bench_row() {
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$BENCH_SUMMARY"
}
