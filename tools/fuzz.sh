#!/bin/sh
# Runs each libFuzzer target named (default: every fuzz/*.c) for FUZZ_SECONDS,
# FUZZ_JOBS at a time (default 2), starting from its committed seed corpus
# fuzz/corpus/<target>/ (read only: new inputs go to build/fuzz/work/<target>/).
# A crash, leak, sanitizer report or timeout fails the run; the input is kept
# as build/fuzz/artifacts/<target>-crash-<sha1> and the log's tail is printed.
set -u
cd "$(dirname "$0")/.."
seconds="${FUZZ_SECONDS:-60}"
jobs="${FUZZ_JOBS:-2}"
targets="${*:-$(for f in fuzz/*.c; do basename "$f" .c; done)}"
mkdir -p build/fuzz/work build/fuzz/artifacts build/fuzz/logs
supp="$(pwd)/tools/lsan.supp"

run_one() {
  t="$1"
  bin="build/fuzz/bin/$t"
  log="build/fuzz/logs/$t.log"
  mkdir -p "build/fuzz/work/$t" "fuzz/corpus/$t"
  dict=""
  [ -f "fuzz/$t.dict" ] && dict="-dict=fuzz/$t.dict"
  start=$(date +%s)
  # shellcheck disable=SC2086
  ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:symbolize=1" \
  LSAN_OPTIONS="suppressions=$supp:print_suppressions=0" \
  UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
    "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=4096 \
      -print_final_stats=1 -artifact_prefix="build/fuzz/artifacts/$t-" $dict \
      "build/fuzz/work/$t" "fuzz/corpus/$t" >"$log" 2>&1
  rc=$?
  runs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$')
  cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -n 1)
  if [ "$rc" -eq 0 ]; then
    echo "fuzz: $t ok: ${runs:-?} runs in $(( $(date +%s) - start )) s, ${cov:-cov: ?}"
  else
    echo "fuzz: $t FAILED (exit $rc) after $(( $(date +%s) - start )) s; log $log:"
    tail -n 60 "$log"
    return 1
  fi
}

status=0
running=0
pids=""
tmp=$(mktemp -d)
for t in $targets; do
  ( run_one "$t" >"$tmp/$t.out" 2>&1; echo $? >"$tmp/$t.rc" ) &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then
    wait
    running=0
  fi
done
wait
for t in $targets; do
  cat "$tmp/$t.out"
  [ "$(cat "$tmp/$t.rc")" = 0 ] || status=1
done
rm -rf "$tmp"
[ "$status" -eq 0 ] && echo "fuzz: all targets passed" || echo "fuzz: FAILED"
exit "$status"
