#!/bin/sh
# Installs the Debian packages named in the Makefile's DEB_PACKAGES (the only list).
# Idempotent: does nothing when every package is already installed.
set -eu
missing=""
for p in $DEB_PACKAGES; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -z "$missing" ]; then
  echo "deps: all packages installed"
  exit 0
fi
cmd="apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends$missing"
if [ "$(id -u)" != 0 ]; then
  echo "deps: missing:$missing"
  echo "deps: run as root:  $cmd"
  exit 1
fi
echo "deps: installing:$missing"
apt-get update
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing
# The distribution's services must not hold the ports or files the tests use.
for svc in nginx redis-server chrony; do
  if command -v service >/dev/null 2>&1; then service "$svc" stop >/dev/null 2>&1 || true; fi
done
