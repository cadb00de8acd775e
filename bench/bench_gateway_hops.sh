#!/usr/bin/env bash
# Overflow (issue 15, "Benchmarks"): what one and two gateway hops add. Two real
# execd-gateways with the process backend: "cloud", and "local" with --max-sandboxes 1
# and cloud as its --remote, so a second sandbox lands in the cloud. The same sandbox's
# execd is then asked directly, through the cloud's proxy (one hop) and through the
# local gateway, which forwards to the cloud's proxy (two hops): /ping and a `1+1` cell
# (wrk c=1, p50/p99), and a command printing 100,000 lines as SSE events (the added time
# per event). Then sandboxes placed per second: 20 creates at once through two hops
# beside 20 straight on the cloud, each until every one is Running.
set -euo pipefail
BUILD=${1:-build}
DUR=${BENCH_SECONDS:-5}
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"

work=$(mktemp -d)
CLOUD_PID=""; LOCAL_PID=""
cleanup() {
  for port in ${LOCAL_PORT:-} ${CLOUD_PORT:-}; do
    for id in $(curl -s -H "OPEN-SANDBOX-API-KEY: k" "http://127.0.0.1:$port/v1/sandboxes?state=Running&state=Pending&pageSize=1000" |
                python3 -c 'import json,sys; print(" ".join(s["id"] for s in json.load(sys.stdin)["items"]))' 2>/dev/null); do
      curl -s -o /dev/null -X DELETE -H "OPEN-SANDBOX-API-KEY: k" "http://127.0.0.1:$port/v1/sandboxes/$id" || true
    done
  done
  for pid in $LOCAL_PID $CLOUD_PID; do kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; done
  [ -n "${KEEP_WORK:-}" ] && echo "kept $work" || rm -rf "$work"
}
trap cleanup EXIT

# start_gateway NAME ARGS...: sets <NAME>_PID and <NAME>_PORT.
start_gateway() {
  local name=$1; shift
  mkdir -p "$work/$name"
  "$BUILD/execd-gateway" --port 0 --api-key k --state-dir "$work/$name" "$@" \
    2>"$work/$name.log" &
  local pid=$! port=""
  for _ in $(seq 200); do
    port=$(grep -oE 'listening on [^ ]+:[0-9]+' "$work/$name.log" | grep -oE '[0-9]+$' || true)
    [ -n "$port" ] && break
    sleep 0.05
  done
  [ -n "$port" ] || { echo "$name gateway did not start:"; cat "$work/$name.log"; exit 1; }
  printf -v "${name^^}_PID" '%s' "$pid"
  printf -v "${name^^}_PORT" '%s' "$port"
}

KEY=(-H 'OPEN-SANDBOX-API-KEY: k')
create() { curl -s "${KEY[@]}" -X POST "http://127.0.0.1:$1/v1/sandboxes" -d '{"image":{"uri":"host"},"timeout":3600}' |
           python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])'; }
wait_running() {  # PORT ID...
  local port=$1; shift
  for id in "$@"; do
    for _ in $(seq 1200); do
      state=$(curl -s "${KEY[@]}" "http://127.0.0.1:$port/v1/sandboxes/$id" | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"]["state"])')
      [ "$state" = Running ] && break
      [ "$state" = Failed ] && { echo "sandbox $id failed"; exit 1; }
      sleep 0.05
    done
  done
}

start_gateway cloud
start_gateway local --max-sandboxes 1 --remote "http://127.0.0.1:$CLOUD_PORT" --remote-api-key k
here_id=$(create "$LOCAL_PORT")
remote_id=$(create "$LOCAL_PORT")
wait_running "$LOCAL_PORT" "$here_id" "$remote_id"
read -r ep token < <(curl -s "${KEY[@]}" "http://127.0.0.1:$CLOUD_PORT/v1/sandboxes/$remote_id/endpoints/44772" |
                     python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["endpoint"], j["headers"]["X-EXECD-ACCESS-TOKEN"])')
direct="http://$ep"
one_hop="http://127.0.0.1:$CLOUD_PORT/v1/sandboxes/$remote_id/proxy/44772"
two_hops="http://127.0.0.1:$LOCAL_PORT/v1/sandboxes/$remote_id/proxy/44772"
TOKEN=(-H "X-EXECD-ACCESS-TOKEN: $token")

# A python context for the cell, made through the direct route (same execd for all three).
ctx=$(curl -s "${TOKEN[@]}" "$direct/code/context" -d '{"language":"python"}' |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
curl -s -o /dev/null "${TOKEN[@]}" "$direct/code" -d "{\"code\":\"0\",\"context\":{\"id\":\"$ctx\"}}"
cat > "$work/cell.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"code":"1+1","context":{"id":"$ctx"}}'
wrk.headers["Content-Type"] = "application/json"
LUA

echo "== /ping and 1+1, direct vs one and two gateway hops (wrk c=1, ${DUR}s each)"
printf '%-22s %10s %10s %10s %14s\n' "" "req/s" "p50 ms" "p99 ms" "added p50 ms"
declare -A P50
for what in ping cell; do
  for route in direct one_hop two_hops; do
    base=${!route}
    hdr=("${TOKEN[@]}"); [ "$route" = direct ] || hdr=("${KEY[@]}")
    if [ "$what" = ping ]; then
      read -r rps p50 p99 < <(wrk_figures -t1 -c1 -d"${DUR}s" "${hdr[@]}" "$base/ping")
    else
      read -r rps p50 p99 < <(wrk_figures -t1 -c1 -d"${DUR}s" -s "$work/cell.lua" "${hdr[@]}" "$base/code")
    fi
    P50[$what.$route]=$p50
    added=$(awk -v a="$p50" -v b="${P50[$what.direct]}" 'BEGIN {printf "%.3f", a - b}')
    printf '%-22s %10s %10s %10s %14s\n' "$what $route" "$rps" "$p50" "$p99" "$added"
  done
done

echo "== 100,000 SSE events (a command printing 100,000 lines), direct vs hops (best of 5)"
body='{"command":"seq 100000"}'
declare -A T
for route in direct one_hop two_hops; do
  base=${!route}
  hdr=("${TOKEN[@]}"); [ "$route" = direct ] || hdr=("${KEY[@]}")
  best=""
  for _ in 1 2 3 4 5; do
    t=$(curl -s -o "$work/events" -w '%{time_total}' "${hdr[@]}" "$base/command" -d "$body")
    n=$(grep -c '"type":"stdout"' "$work/events" || true)
    [ "$n" = 100000 ] || { echo "$route: $n stdout events, not 100000"; exit 1; }
    best=$(awk -v a="$t" -v b="$best" 'BEGIN {print (b == "" || a < b) ? a : b}')
  done
  T[$route]=$best
  per=$(awk -v t="$best" -v d="${T[direct]}" 'BEGIN {printf "%.2f", (t - d) * 1e6 / 100000}')
  printf '%-10s %8.3f s   added per event: %s us\n' "$route" "$best" "$per"
done

echo "== sandboxes placed per second: 20 creates at once, until all Running"
place() {  # PORT -> seconds for 20
  local port=$1 t0 t1 ids=()
  t0=$(date +%s.%N)
  for i in $(seq 20); do create "$port" > "$work/id.$i" & done
  wait
  for i in $(seq 20); do ids+=("$(cat "$work/id.$i")"); done
  wait_running "$port" "${ids[@]}"
  t1=$(date +%s.%N)
  for id in "${ids[@]}"; do curl -s -o /dev/null -X DELETE "${KEY[@]}" "http://127.0.0.1:$port/v1/sandboxes/$id"; done
  awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f", b - a}'
}
cloud_s=$(place "$CLOUD_PORT")
local_s=$(place "$LOCAL_PORT")
cloud_rate=$(awk -v s="$cloud_s" 'BEGIN {printf "%.1f", 20 / s}')
local_rate=$(awk -v s="$local_s" 'BEGIN {printf "%.1f", 20 / s}')
echo "straight on the cloud gateway: ${cloud_s} s (${cloud_rate}/s)"
echo "through two hops (local overflowing to the cloud): ${local_s} s (${local_rate}/s, $(ratio "$local_rate" "$cloud_rate") of straight)"
