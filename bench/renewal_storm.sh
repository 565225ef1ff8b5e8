#!/bin/sh
# Renewal storm: token requests per renewal period with 200 concurrent clients
# through the OpenResty gateway example (examples/openresty), against the
# stand-in with short-lived tokens. Not a test; prints a Markdown table.
#   bench/renewal_storm.sh [seconds per run (default 10)] [token lifetime (default 3)]
set -eu
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "wrk is not installed (make deps)" >&2; exit 1; }
command -v nginx >/dev/null || { echo "nginx is not installed (make deps)" >&2; exit 1; }
LUA_PATH="./lua/?.lua;./lua/?/init.lua;./spec/?.lua;;" exec lua5.4 bench/renewal_storm.lua "${1:-10}" "${2:-3}"
