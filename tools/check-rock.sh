#!/bin/sh
# Proves the rockspec installs a tree from which `require "skewguard"` works.
set -eu
cd "$(dirname "$0")/.."
tree=$(mktemp -d)
trap 'rm -rf "$tree"' EXIT
luarocks --lua-version=5.4 make --deps-mode=none --tree="$tree" skewguard-scm-1.rockspec \
    CURL_INCDIR="$(dirname "$(dirname "$(find /usr/include -name curl.h -path "*curl/curl.h" | head -n1)")")" >"$tree.log" 2>&1 \
  || { cat "$tree.log"; exit 1; }
rm -f "$tree.log"
LUA_PATH="$tree/share/lua/5.4/?.lua;$tree/share/lua/5.4/?/init.lua;;" \
LUA_CPATH="$tree/lib/lua/5.4/?.so;;" \
  lua5.4 -e 'local sg = require "skewguard"; assert(sg.core.monotonic() > 0);
             print("rock: require \"skewguard\" works from " .. package.searchpath("skewguard.core", package.cpath))'
