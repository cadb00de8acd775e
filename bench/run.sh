#!/usr/bin/env bash
# `make bench`: installs bench-only tools when missing, then runs every bench/bench_*.sh
# in name order; each prints its own figures beside a peer measured in the same run.
set -euo pipefail
BUILD=${1:-build}
here=$(cd "$(dirname "$0")" && pwd)
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
missing=""
for p in nginx-light wrk curl python3 python3-jupyter-server xpython ripgrep python3-websocket; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "bench: installing$missing"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
fi
for b in "$here"/bench_*.sh; do
  echo "### $(basename "$b")"
  bash "$b" "$BUILD"
  echo
done
