#!/bin/sh
# `make bench`: every benchmark, Markdown on stdout. Run from the repository root.
set -eu
cd "$(dirname "$0")/.."
lua5.4 bench/sntp_accuracy
