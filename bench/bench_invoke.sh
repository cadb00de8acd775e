#!/usr/bin/env bash
# Handlers (issue 13): see invoke_latency.py. `def handler(e): return e` warm and cold
# through POST /invoke beside python3 -I -c of the same, throughput at concurrency 8, and
# the idle zygote's RSS; then the same for JavaScript (and TypeScript when
# EXECD_TYPESCRIPT_MODULE names the typescript package, as `make bench` sets it) beside
# node -e, and the idle node spares' RSS.
set -euo pipefail
# RT=N runs all of it (daemon, zygote, children, client, the references and the floor) at
# SCHED_FIFO priority N: on a machine loaded by other work the figures are then ours and
# the floor's rather than the scheduler's (root; the throughput rows take both cores for
# a few seconds).
if [ -n "${RT:-}" ] && [ -z "${BENCH_INVOKE_RT:-}" ]; then
  BENCH_INVOKE_RT=1 exec chrt -f "$RT" bash "$0" "$@"
fi
BUILD=${1:-build}
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"
# The interpreter a deployment runs (the image's /usr/bin/python3), for the daemon and the
# reference alike: a version manager's shim in PATH would time itself, not Python.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
ts_args=()
if [ -n "${EXECD_TYPESCRIPT_MODULE:-}" ] && [ -d "$EXECD_TYPESCRIPT_MODULE" ]; then
  ts_args=(--typescript-module "$EXECD_TYPESCRIPT_MODULE")
else
  unset EXECD_TYPESCRIPT_MODULE
fi
start_execd "$BUILD" "${ts_args[@]}"
trap stop_execd EXIT
/usr/bin/python3 "$here/invoke_latency.py" "$EXECD_PORT" "$EXECD_PID" "${RUNS:-300}"
