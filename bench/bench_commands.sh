#!/usr/bin/env bash
# Commands: foreground round trip through HTTP+SSE beside the bare spawn of the same
# command (same run, interleaved), 16-client throughput, and RSS after 10,000 commands.
set -euo pipefail
BUILD=${1:-build}
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

start_execd "$BUILD" --execution-retention 2s
trap stop_execd EXIT
echo "execd idle RSS: $(rss_mib "$EXECD_PID") MiB"
"$BUILD/bench/command_latency" "$EXECD_PORT" "${RUNS:-2000}" 16

# Memory after 10,000 commands: finished executions are evicted after the retention
# (2 s here), so RSS settles back near idle instead of growing per command.
before=$(rss_mib "$EXECD_PID")
python3 - "$EXECD_PORT" <<'PY'
import http.client, sys, threading
port = int(sys.argv[1])
def worker(n):
    c = http.client.HTTPConnection("127.0.0.1", port)
    for _ in range(n):
        c.request("POST", "/command", body='{"command":"echo hi"}', headers={"Content-Type": "application/json"})
        r = c.getresponse(); body = r.read()
        assert b"execution_complete" in body, body
threads = [threading.Thread(target=worker, args=(1250,)) for _ in range(8)]
[t.start() for t in threads]; [t.join() for t in threads]
PY
peak=$(rss_mib "$EXECD_PID")
sleep 3
curl -s -o /dev/null -X POST "http://127.0.0.1:$EXECD_PORT/command" -d '{"command":"true"}'  # triggers the sweep
after=$(rss_mib "$EXECD_PID")
growth=$(awk -v a="$after" -v b="$before" 'BEGIN { printf "%.1f", a-b }')
echo "RSS before 10,000 commands: $before MiB, right after: $peak MiB, after retention: $after MiB (growth $growth MiB, target < 5: $(verdict "$growth < 5"))"
