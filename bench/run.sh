#!/bin/sh
# `make bench`: every benchmark in bench/, Markdown on stdout, in one run (a few
# minutes). Run from the repository root after `make` for lua5.4 and luajit.
# Benchmarks are not tests: they print numbers and a verdict per target, and
# fail only when a benchmark cannot run.
set -eu
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM

# The benchmark's own helpers: the floor module per Lua, the plain libcurl loop.
for lua in lua5.4 luajit; do
  inc=/usr/include/lua5.4
  [ "$lua" = luajit ] && inc=/usr/include/luajit-2.1
  mkdir -p "build/bench/$lua"
  cc -std=c99 -O2 -Wall -Wextra -Werror -pedantic -fPIC -shared -I"$inc" bench/floor.c \
    -o "build/bench/$lua/floor.so"
done
cc -std=c99 -O2 -Wall -Wextra -Werror -pedantic bench/curl_loop.c -lcurl -o build/bench/curl_loop

model=$(lscpu | sed -n 's/^Model name: *//p' | head -n 1)
cpus=$(nproc)
echo "# skewguard benchmarks"
echo
echo "Machine: $model, $cpus CPUs (shared with other work while measuring); $(uname -sr);"
echo "$(lua5.4 -v 2>&1 | head -n 1 | cut -d' ' -f1-2), $(luajit -v | cut -d' ' -f1-2), $(curl --version | head -n 1 | cut -d' ' -f1-2 | sed 's/curl/libcurl/'),"
echo "$(nginx -v 2>&1 | sed 's/^nginx version: //') (stand-in, one worker). Run at $(date -u '+%Y-%m-%d %H:%M UTC')."

echo
echo "## Hot path: \`client:token()\` on a fresh token"
echo
echo "ns per call (median of interleaved rounds, CPU time, net of the empty loop); × floor; how many times faster than the naive wrapper."
echo
echo "| Lua | variant | ns/call | × floor | naive ÷ this |"
echo "|---|---|---|---|---|"
for lua in lua5.4 luajit; do "$lua" bench/hotpath.lua 2>>"$work/verdicts"; done

echo
echo "## Request overhead: authenticated GETs against the stand-in (keep-alive, loopback)"
echo
echo "Interleaved rounds of 500 requests, each variant in turn, same server. The machine is shared: the best"
echo "round of each variant is its own speed (bold ratio); the medians show how noisy the machine was."
echo "The client's rate limiter is off (\`rate_limit = false\`): it would cap it at 300 requests a minute."
echo
echo "| Lua | variant | best req/s | per request | best ÷ curl | median req/s | median ÷ curl |"
echo "|---|---|---|---|---|---|---|"
for lua in lua5.4 luajit; do "$lua" bench/requests.lua 2>>"$work/verdicts"; done

echo
echo "## Date-header skew convergence"
echo
lua5.4 bench/skew_convergence.lua

echo
echo "## Memory"
echo
echo "VmRSS (kB) after a warm-up and a full collection, before and after; Lua heap growth in kB."
echo
echo "| Lua | workload | RSS before | RSS after | RSS growth | heap growth | verdict (bound 512 kB) |"
echo "|---|---|---|---|---|---|---|"
for lua in lua5.4 luajit; do "$lua" bench/memory.lua; done

echo
echo "## SNTP accuracy"
echo
lua5.4 bench/sntp_accuracy

echo
echo "## Renewal storm under nginx"
echo
# Slot for the OpenResty benchmark (token requests per renewal across workers).
if [ -f bench/renewal_storm.sh ]; then
  sh bench/renewal_storm.sh
else
  echo "(not yet: comes with the OpenResty transport)"
fi

for b in bench/*.sh; do
  case "$b" in bench/run.sh|bench/renewal_storm.sh) continue ;; esac
  echo
  echo "## $(basename "$b" .sh)"
  echo
  sh "$b"
done

echo
echo "## Targets"
echo
echo "| target | measured | met |"
echo "|---|---|---|"
awk '
  function val(key,   i, kv) {
    for (i = 3; i <= NF; i++) { split($i, kv, "="); if (kv[1] == key) return kv[2] + 0 }
    return -1
  }
  /^HOTPATH/ {
    a = val("client_vs_floor"); b = val("naive_vs_client")
    printf "| %s: `client:token()` ≤ 1.2× floor | %.2f× | %s |\n", $2, a, (a <= 1.2 ? "yes" : "**no**")
    printf "| %s: ≥ 15× faster than the naive wrapper | %.1f× | %s |\n", $2, b, (b >= 15 ? "yes" : "**no**")
  }
  /^REQUESTS/ {
    a = val("client_vs_curl"); c = val("client_vs_httpx")
    printf "| %s: `client:request` ≥ 90%% of the plain libcurl loop | %.0f%% (best rounds) | %s |\n", $2, a * 100,
      (a >= 0.9 ? "yes" : "**no**")
    printf "| %s: `client:request` ÷ Python httpx naive wrapper | %.1f× | (reported) |\n", $2, c
  }
' "$work/verdicts"
