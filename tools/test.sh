#!/bin/sh
# Runs luacheck and the busted suite under each interpreter given (default:
# lua5.4 and luajit), then prints one "tests: N passed, N failed" line.
# SG_SANITIZE=asan|valgrind runs under a sanitizer; SKEWGUARD_BUILD overrides
# the directory that holds skewguard/core.so.
set -u
cd "$(dirname "$0")/.."
interps="${*:-lua5.4 luajit}"
status=0
passed=0
failed=0
if [ -z "${SG_SANITIZE:-}" ]; then
  echo "== luacheck"
  # Only the directories that exist yet: luacheck counts a missing one as a failure.
  dirs=""
  for d in lua spec bin examples bench tools fuzz; do [ -e "$d" ] && dirs="$dirs $d"; done
  # shellcheck disable=SC2086
  luacheck -q --no-color $dirs || status=1
fi
for interp in $interps; do
  build="${SKEWGUARD_BUILD:-build/$interp}"
  log=$(mktemp)
  echo "== busted under $interp ($build) ${SG_SANITIZE:-}"
  case "${SG_SANITIZE:-}" in
    asan)
      # The interpreter is not instrumented: preload the runtimes.
      pre="$(clang -print-file-name=libclang_rt.asan-x86_64.so)"
      SKEWGUARD_BUILD="$build" LD_PRELOAD="$pre" \
        ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:exitcode=23" \
        LSAN_OPTIONS="suppressions=$(pwd)/tools/lsan.supp:print_suppressions=0" \
        UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
        "$interp" /usr/bin/busted -o utfTerminal >"$log" 2>&1
      rc=$? ;;
    valgrind)
      SKEWGUARD_BUILD="$build" SKEWGUARD_SLOW=valgrind \
        valgrind -q --error-exitcode=23 --leak-check=full --errors-for-leak-kinds=definite \
        --show-leak-kinds=definite --suppressions=tools/valgrind.supp \
        "$interp" /usr/bin/busted -o utfTerminal >"$log" 2>&1
      rc=$? ;;
    *)
      SKEWGUARD_BUILD="$build" "$interp" /usr/bin/busted -o utfTerminal >"$log" 2>&1
      rc=$? ;;
  esac
  cat "$log"
  line=$(grep -E '[0-9]+ success(es)? / [0-9]+ failures? / [0-9]+ errors? / [0-9]+ pending' "$log" | tail -n 1)
  if [ -z "$line" ]; then
    echo "!! no busted summary under $interp (exit $rc)"
    status=1
  else
    s=$(echo "$line" | grep -oE '[0-9]+ success' | grep -oE '[0-9]+')
    f=$(echo "$line" | grep -oE '[0-9]+ failure' | grep -oE '[0-9]+')
    e=$(echo "$line" | grep -oE '[0-9]+ error' | grep -oE '[0-9]+')
    passed=$((passed + s))
    failed=$((failed + f + e))
  fi
  [ "$rc" -eq 0 ] || { echo "!! busted under $interp exited $rc"; status=1; }
  rm -f "$log"
done
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
echo "tests: $passed passed, $failed failed"
exit "$status"
