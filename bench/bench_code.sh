#!/usr/bin/env bash
# Code contexts (issue 4): see code_latency.py. Needs python3-ipykernel and
# python3-jupyter-server (bench/run.sh installs what is missing).
set -euo pipefail
BUILD=${1:-build}
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"
xpy_port=""
if [ -f /usr/share/jupyter/kernels/xpython/kernel.json ]; then
  start_execd "$BUILD" --kernel python=xpython
  XPY_PID=$EXECD_PID; XPY_LOG=$EXECD_LOG; xpy_port=$EXECD_PORT
fi
start_execd "$BUILD"
trap 'stop_execd; [ -n "${XPY_PID:-}" ] && kill $XPY_PID 2>/dev/null; rm -f "${XPY_LOG:-}"' EXIT
/usr/bin/python3 "$here/code_latency.py" "$EXECD_PORT" "${RUNS:-500}" $xpy_port
