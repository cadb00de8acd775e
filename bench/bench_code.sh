#!/usr/bin/env bash
# Code contexts (issue 4): see code_latency.py. Needs python3-ipykernel and
# python3-jupyter-server (bench/run.sh installs what is missing).
set -euo pipefail
BUILD=${1:-build}
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"
start_execd "$BUILD"
trap stop_execd EXIT
/usr/bin/python3 "$here/code_latency.py" "$EXECD_PORT" "${RUNS:-500}"
