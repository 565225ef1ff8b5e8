#!/bin/sh
# make demo: the main job. Starts the Genesys stand-in with its clock 7.3 s ahead
# and short token lifetimes, and an SNTP responder with the same offset (so UTC
# itself is "7.3 s ahead" of this machine: the local clock is the one that is off),
# runs the doctor against them, then a short workload that crosses token renewals,
# a revocation and a 429. Stops everything it started.
set -u
cd "$(dirname "$0")/.."
OFFSET=${DEMO_OFFSET:-7.3}
LIFETIME=${DEMO_LIFETIME:-6}
SECONDS_OF_WORK=${DEMO_SECONDS:-20}
export LUA_PATH="./lua/?.lua;./lua/?/init.lua;;"
export LUA_CPATH="./build/lua5.4/?.so;;"

prefix=""
ntp_pid=""
cleanup() {
  [ -n "$prefix" ] && sh tools/standin/run stop "$prefix" >/dev/null 2>&1
  [ -n "$ntp_pid" ] && kill "$ntp_pid" 2>/dev/null
  [ -n "${ntp_out:-}" ] && rm -f "$ntp_out"
}
trap cleanup EXIT INT TERM

echo "== starting the Genesys stand-in: clock ${OFFSET} s ahead, tokens live ${LIFETIME} s"
out=$(sh tools/standin/run --offset "$OFFSET" --lifetime "$LIFETIME") || { echo "$out"; exit 2; }
url=$(echo "$out" | sed -n 's/^standin: //p')
prefix=$(echo "$out" | sed -n 's/^prefix: //p')
echo "   $url"

echo "== starting an SNTP responder on loopback: clock ${OFFSET} s ahead"
ntp_out=$(mktemp)
/usr/bin/python3 spec/support/sntp_responder.py 127.0.0.1 >"$ntp_out" 2>&1 &
ntp_pid=$!
i=0
while ! grep -q '^PORT ' "$ntp_out" && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
ntp_port=$(sed -n 's/^PORT //p' "$ntp_out")
[ -n "$ntp_port" ] || { echo "SNTP responder did not start"; cat "$ntp_out"; exit 2; }
lua5.4 -e "local s = require('socket').udp(); s:setpeername('127.0.0.1', $ntp_port); s:settimeout(2);
  s:send('CTL set offset=$OFFSET'); assert(s:receive():sub(1, 2) == 'OK')"
echo "   127.0.0.1:$ntp_port"

echo
echo "== bin/skewguard-doctor --login-url $url --ntp 127.0.0.1:$ntp_port"
GENESYS_CLIENT_ID=test-client GENESYS_CLIENT_SECRET=test-secret \
  lua5.4 bin/skewguard-doctor --login-url "$url" --ntp "127.0.0.1:$ntp_port"
doctor_exit=$?
echo "   (doctor exit code $doctor_exit: 0 healthy, 1 problem found, 2 could not run)"
[ "$doctor_exit" -eq 1 ] || { echo "demo: the doctor should have found this machine's clock off"; exit 1; }

echo
echo "== the workload: skewguard keeps every call working anyway"
GENESYS_CLIENT_ID=test-client GENESYS_CLIENT_SECRET=test-secret \
  lua5.4 examples/demo_workload.lua "$url" "$SECONDS_OF_WORK"
work_exit=$?
[ "$work_exit" -eq 0 ] || { echo "demo: the workload had failed calls"; exit 1; }
echo
echo "demo: done (everything it started is stopped)"
