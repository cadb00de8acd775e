#!/usr/bin/env bash
# The reverse proxy (issue 12, "Benchmarks"): /ping and an `echo` command through the proxy
# beside direct to execd (p50/p99 and the added p50; target < 0.3 ms), and a 1 GB download's
# MB/s through the proxy beside direct, with the proxy's RSS after it. The proxy is
# tests/integration/proxy_front: an HttpServer with http::ReverseProxy's routes, the same
# class and routes execd-gateway mounts at /v1/sandboxes/{id}/proxy/{port}/...
set -euo pipefail
BUILD=${1:-build}
DUR=${BENCH_SECONDS:-5}
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"

FRONT_BIN="$BUILD/tests/integration/proxy_front"
[ -x "$FRONT_BIN" ] || ninja -C "$BUILD" tests/integration/proxy_front >/dev/null
work=$(mktemp -d)
trap 'stop_execd; kill "$FRONT_PID" 2>/dev/null; wait "$FRONT_PID" 2>/dev/null; rm -rf "$work"' EXIT

start_execd "$BUILD" --access-token bench-token
"$FRONT_BIN" --port 0 --host 127.0.0.1 --log-level info --api-key bench-key --upstream-token bench-token \
  2>"$work/front.log" &
FRONT_PID=$!
for _ in $(seq 100); do
  FRONT_PORT=$(grep -oE 'listening on [^ ]+:[0-9]+' "$work/front.log" | grep -oE '[0-9]+$' || true)
  [ -n "$FRONT_PORT" ] && break
  sleep 0.05
done
[ -n "${FRONT_PORT:-}" ] || { echo "proxy_front did not start:"; cat "$work/front.log"; exit 1; }
direct="http://127.0.0.1:$EXECD_PORT"
proxied="http://127.0.0.1:$FRONT_PORT/p/$EXECD_PORT"
TOKEN=(-H 'X-EXECD-ACCESS-TOKEN: bench-token')
KEY=(-H 'OPEN-SANDBOX-API-KEY: bench-key')
cat > "$work/echo.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"command":"echo 1"}'
wrk.headers["Content-Type"] = "application/json"
LUA

echo "== /ping and an echo command, direct vs through the proxy (wrk c=1, ${DUR}s each)"
printf '%-28s %12s %10s %10s\n' "" "req/s" "p50 ms" "p99 ms"
read -r d_rps d_p50 d_p99 < <(wrk_figures -t1 -c1 -d"${DUR}s" "${TOKEN[@]}" "$direct/ping")
read -r p_rps p_p50 p_p99 < <(wrk_figures -t1 -c1 -d"${DUR}s" "${KEY[@]}" "$proxied/ping")
read -r dc_rps dc_p50 dc_p99 < <(wrk_figures -t1 -c1 -d"${DUR}s" -s "$work/echo.lua" "${TOKEN[@]}" "$direct/command")
read -r pc_rps pc_p50 pc_p99 < <(wrk_figures -t1 -c1 -d"${DUR}s" -s "$work/echo.lua" "${KEY[@]}" "$proxied/command")
printf '%-28s %12s %10s %10s\n' "/ping direct" "$d_rps" "$d_p50" "$d_p99"
printf '%-28s %12s %10s %10s\n' "/ping via proxy" "$p_rps" "$p_p50" "$p_p99"
printf '%-28s %12s %10s %10s\n' "echo command direct" "$dc_rps" "$dc_p50" "$dc_p99"
printf '%-28s %12s %10s %10s\n' "echo command via proxy" "$pc_rps" "$pc_p50" "$pc_p99"
added_ping=$(awk -v a="$p_p50" -v b="$d_p50" 'BEGIN {printf "%.3f", a - b}')
added_cmd=$(awk -v a="$pc_p50" -v b="$dc_p50" 'BEGIN {printf "%.3f", a - b}')

echo "== 1 GB download, direct vs through the proxy (curl)"
head -c 1G /dev/zero > "$work/big.bin"
rss_before=$(rss_mib "$FRONT_PID")
d_speed=$(curl -s -o /dev/null -w '%{speed_download}' "${TOKEN[@]}" "$direct/files/download?path=$work/big.bin")
p_speed=$(curl -s -o /dev/null -w '%{speed_download}' "${KEY[@]}" "$proxied/files/download?path=$work/big.bin")
rss_after=$(awk '/VmHWM/ {printf "%.1f", $2/1024}' "/proc/$FRONT_PID/status")
d_mbs=$(awk -v s="$d_speed" 'BEGIN {printf "%.0f", s/1e6}')
p_mbs=$(awk -v s="$p_speed" 'BEGIN {printf "%.0f", s/1e6}')
echo "direct: ${d_mbs} MB/s; through the proxy: ${p_mbs} MB/s ($(ratio "$p_mbs" "$d_mbs") of direct)"
echo "proxy RSS: ${rss_before} MiB before, peak ${rss_after} MiB after 1 GB"

echo "== targets"
echo "/ping added p50 < 0.3 ms: ${added_ping} ms -> $(verdict "$added_ping < 0.3")"
echo "echo command added p50 < 0.3 ms: ${added_cmd} ms -> $(verdict "$added_cmd < 0.3")"
echo "proxy RSS flat over 1 GB (peak - before < 16 MiB): -> $(verdict "$rss_after - $rss_before < 16")"
