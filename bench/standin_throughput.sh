#!/bin/sh
# Throughput of the Genesys stand-in: authenticated GET /api/v2/organizations/me over
# keep-alive connections, measured with wrk. Not a test; prints requests/s.
#   bench/standin_throughput.sh [workers (default 1)] [seconds (default 5)] [connections (default 32)]
set -eu
cd "$(dirname "$0")/.."
workers=${1:-1}
seconds=${2:-5}
connections=${3:-32}
command -v wrk >/dev/null || { echo "wrk is not installed (make deps)" >&2; exit 1; }
out=$(env -u LD_PRELOAD sh tools/standin/run start --workers "$workers" --owner-pid $$)
url=$(echo "$out" | sed -n 's/^standin: //p')
prefix=$(echo "$out" | sed -n 's/^prefix: //p')
trap 'sh tools/standin/run stop "$prefix"' EXIT INT TERM
token=$(curl -s -u test-client:test-secret -d grant_type=client_credentials "$url/oauth/token" \
  | sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p')
[ -n "$token" ] || { echo "no token from the stand-in" >&2; exit 1; }
echo "stand-in: $workers worker(s); wrk: 1 thread, $connections connections, ${seconds}s"
wrk -t1 -c"$connections" -d"${seconds}s" -H "Authorization: Bearer $token" \
  "$url/api/v2/organizations/me" | tee "$prefix/wrk.txt"
ok=$(curl -s "$url/__standin/counters" | sed -n 's/.*"api_ok":\([0-9]*\).*/\1/p')
echo "stand-in counted $ok successful API requests"
