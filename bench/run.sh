#!/bin/sh
# `make bench`: every benchmark in bench/, Markdown on stdout. Run from the repository root.
set -eu
cd "$(dirname "$0")/.."
lua5.4 bench/sntp_accuracy
for b in bench/*.sh; do
  [ "$b" = bench/run.sh ] && continue
  echo
  sh "$b"
done
