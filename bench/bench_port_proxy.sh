#!/usr/bin/env bash
# execd's /proxy/{port} (issue 14, "Benchmarks"): a small file from nginx through
# /proxy/{port}/ beside the same request direct to nginx (wrk c=1: p50/p99 and the added
# p50), and a 1 GB file's MB/s through /proxy/{port} beside direct, with execd's RSS
# after it. nginx (one worker, lib.sh) is the upstream: a fast server, so what the proxy
# adds is what shows.
set -euo pipefail
BUILD=${1:-build}
DUR=${BENCH_SECONDS:-5}
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"

work=$(mktemp -d)
trap 'stop_execd; [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null; rm -rf "$work"' EXIT

start_execd "$BUILD" --access-token bench-token
start_nginx "$work"
printf 'hello\n' > "$work/www/small.txt"
head -c 1G /dev/zero > "$work/www/big.bin"
chmod 644 "$work/www/small.txt" "$work/www/big.bin"
direct="http://127.0.0.1:$NGINX_PORT"
proxied="http://127.0.0.1:$EXECD_PORT/proxy/$NGINX_PORT"
TOKEN=(-H 'X-EXECD-ACCESS-TOKEN: bench-token')
[ "$(curl -s "${TOKEN[@]}" "$proxied/small.txt")" = hello ] || { echo "the proxy did not reach nginx"; exit 1; }

echo "== a 6-byte file from nginx, direct vs through /proxy/{port} (wrk c=1, ${DUR}s each)"
printf '%-28s %12s %10s %10s\n' "" "req/s" "p50 ms" "p99 ms"
read -r d_rps d_p50 d_p99 < <(wrk_figures -t1 -c1 -d"${DUR}s" "$direct/small.txt")
read -r p_rps p_p50 p_p99 < <(wrk_figures -t1 -c1 -d"${DUR}s" "${TOKEN[@]}" "$proxied/small.txt")
printf '%-28s %12s %10s %10s\n' "direct to nginx" "$d_rps" "$d_p50" "$d_p99"
printf '%-28s %12s %10s %10s\n' "via execd /proxy/{port}" "$p_rps" "$p_p50" "$p_p99"
added=$(awk -v a="$p_p50" -v b="$d_p50" 'BEGIN {printf "%.3f", a - b}')

echo "== 1 GB file, direct vs through /proxy/{port} (curl)"
rss_before=$(rss_mib "$EXECD_PID")
d_speed=$(curl -s -o /dev/null -w '%{speed_download}' "$direct/big.bin")
p_speed=$(curl -s -o /dev/null -w '%{speed_download}' "${TOKEN[@]}" "$proxied/big.bin")
rss_after=$(awk '/VmHWM/ {printf "%.1f", $2/1024}' "/proc/$EXECD_PID/status")
d_mbs=$(awk -v s="$d_speed" 'BEGIN {printf "%.0f", s/1e6}')
p_mbs=$(awk -v s="$p_speed" 'BEGIN {printf "%.0f", s/1e6}')
echo "direct: ${d_mbs} MB/s; through /proxy/{port}: ${p_mbs} MB/s ($(ratio "$p_mbs" "$d_mbs") of direct)"
echo "execd RSS: ${rss_before} MiB before, peak ${rss_after} MiB after 1 GB"

echo "== targets"
echo "added p50 per request < 0.3 ms: ${added} ms -> $(verdict "$added < 0.3")"
echo "MB/s through the proxy >= 0.5 of direct: $(ratio "$p_mbs" "$d_mbs") -> $(verdict "$p_mbs >= 0.5 * $d_mbs")"
echo "execd RSS flat over 1 GB (peak - before < 16 MiB): -> $(verdict "$rss_after - $rss_before < 16")"
