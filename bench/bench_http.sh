#!/usr/bin/env bash
# HTTP and streaming (issue 2): /ping latency and throughput beside nginx (one worker, a
# 16-byte static file) measured in the same run; execd's idle RSS and RSS with 1,000 open
# /metrics/watch streams.
set -euo pipefail
BUILD=${1:-build}
DUR=${BENCH_SECONDS:-5}
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"

work=$(mktemp -d)
trap 'stop_execd; [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null; rm -rf "$work"' EXIT

# nginx as the reference for a good native HTTP server on this machine.
start_nginx "$work"
printf '0123456789abcde\n' > "$work/www/ping"

start_execd "$BUILD"
sleep 1
idle_rss=$(rss_mib "$EXECD_PID")
idle_anon=$(anon_mib "$EXECD_PID")
# The floor: a program that only links Debian's cpp-httplib (bench/httplib_floor.cpp).
coproc FLOOR { "$BUILD/bench/httplib_floor"; }
sleep 0.5
floor_rss=$(rss_mib "$FLOOR_PID")
exec {FLOOR[1]}>&-
wait "$FLOOR_PID" 2>/dev/null || true

echo "== HTTP: /ping vs nginx 16-byte file (wrk, ${DUR}s each)"
printf '%-28s %12s %10s %10s\n' "" "req/s" "p50 ms" "p99 ms"
read -r e1_rps e1_p50 e1_p99 < <(wrk_figures -t1 -c1 -d"${DUR}s" "http://127.0.0.1:$EXECD_PORT/ping")
read -r n1_rps n1_p50 n1_p99 < <(wrk_figures -t1 -c1 -d"${DUR}s" "http://127.0.0.1:$NGINX_PORT/ping")
read -r e16_rps e16_p50 e16_p99 < <(wrk_figures -t2 -c16 -d"${DUR}s" "http://127.0.0.1:$EXECD_PORT/ping")
read -r n16_rps n16_p50 n16_p99 < <(wrk_figures -t2 -c16 -d"${DUR}s" "http://127.0.0.1:$NGINX_PORT/ping")
printf '%-28s %12s %10s %10s\n' "execd /ping  c=1" "$e1_rps" "$e1_p50" "$e1_p99"
printf '%-28s %12s %10s %10s\n' "nginx        c=1" "$n1_rps" "$n1_p50" "$n1_p99"
printf '%-28s %12s %10s %10s\n' "execd /ping  c=16" "$e16_rps" "$e16_p50" "$e16_p99"
printf '%-28s %12s %10s %10s\n' "nginx        c=16" "$n16_rps" "$n16_p50" "$n16_p99"

p50_ratio=$(ratio "$e1_p50" "$n1_p50")
tput_ratio=$(ratio "$e16_rps" "$n16_rps")

echo "== RSS"
coproc STREAMS { python3 "$here/open_streams.py" "$EXECD_PORT" 1000 /metrics/watch; }
read -r opened secs <&"${STREAMS[0]}"
sleep 1
streams_rss=$(rss_mib "$EXECD_PID")
pong=$(curl -s -o /dev/null -w '%{http_code} %{time_total}' "http://127.0.0.1:$EXECD_PORT/ping")
exec {STREAMS[1]}>&-
wait "$STREAMS_PID" 2>/dev/null || true
echo "idle RSS: ${idle_rss} MiB (anonymous: ${idle_anon} MiB; the rest is the binary and libraries mapped from the page cache)"
echo "floor: a program that only links Debian's cpp-httplib: ${floor_rss} MiB; execd adds $(awk -v a="$idle_rss" -v b="$floor_rss" 'BEGIN {printf "%.1f", a - b}') MiB"
echo "RSS with ${opened} open /metrics/watch streams (all had their first event after ${secs}s): ${streams_rss} MiB; /ping meanwhile: ${pong}s"

echo "== targets"
echo "/ping p50 at c=1 within 2x nginx: ratio ${p50_ratio} -> $(verdict "$p50_ratio <= 2")"
echo "throughput at c=16 >= 40% of nginx: ratio ${tput_ratio} -> $(verdict "$tput_ratio >= 0.4")"
echo "idle RSS < 10 MiB: ${idle_rss} -> $(verdict "$idle_rss < 10")"
echo "1,000 streams, RSS < 64 MiB: ${streams_rss} (${opened} open) -> $(verdict "$streams_rss < 64 && $opened == 1000")"
