#!/usr/bin/env bash
# Files (issue 5): upload and download through execd beside nginx (WebDAV PUT of the
# request body to disk / static GET) and Jupyter Server's contents API for the sizes it
# takes, on loopback, in one run; execd's peak RSS growth across the 1 GB transfers.
set -euo pipefail
BUILD=${1:-build}
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"

work=$(mktemp -d -p "${BENCH_DIR:-/var/tmp}")
trap 'stop_execd; [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null; [ -n "${JPID:-}" ] && kill $JPID 2>/dev/null; [ -n "${SINK_PID:-}" ] && kill $SINK_PID 2>/dev/null; rm -rf "$work"' EXIT
mkdir -p "$work/execd" "$work/jupyter" "$work/src"
start_nginx "$work" "dav_methods PUT; create_full_put_path on;"

start_execd "$BUILD"

JPORT=$(free_port)
JPID=""
if command -v jupyter-server >/dev/null 2>&1 || /usr/bin/python3 -c "import jupyter_server" 2>/dev/null; then
  /usr/bin/python3 -m jupyter_server --no-browser --allow-root --ServerApp.token=t --ServerApp.port="$JPORT" \
    --ServerApp.root_dir="$work/jupyter" >"$work/jupyter.log" 2>&1 &
  JPID=$!
  for _ in $(seq 100); do curl -s "http://127.0.0.1:$JPORT/api?token=t" >/dev/null 2>&1 && break; sleep 0.1; done
fi

for spec in "1M 1048576" "10M 10485760" "100M 104857600" "1G 1073741824"; do
  set -- $spec
  head -c "$2" /dev/urandom > "$work/src/$1"
done

# Median seconds of N runs of a command that prints curl's time_total.
median() { sort -n | awk '{ a[NR] = $1 } END { if (NR == 0) { print "bench: a transfer failed" > "/dev/stderr"; exit 1 } print a[int((NR + 1) / 2)] }'; }
t_ms() { awk -v s="$1" 'BEGIN { printf "%.1f", s * 1000 }'; }
runs_for() { case $1 in 1M) echo 50 ;; 10M) echo 15 ;; 100M) echo 3 ;; *) echo 1 ;; esac; }

E="http://127.0.0.1:$EXECD_PORT"
N="http://127.0.0.1:$NGINX_PORT"
J="http://127.0.0.1:$JPORT"
hwm() { awk '/VmHWM/ { print $2 }' "/proc/$EXECD_PID/status"; }

printf '%-6s %12s %12s %12s %8s %12s %12s %12s %8s\n' size "up execd" "up nginx" "up jupyter" ratio "down execd" "down nginx" "down jupyter" ratio
declare -A UP DOWN
for size in 1M 10M 100M 1G; do
  n=$(runs_for $size)
  src="$work/src/$size"
  [ $size = 1G ] && hwm_before=$(hwm)
  eu=$(for _ in $(seq $n); do curl -sf -o /dev/null -w '%{time_total}\n' \
        -F "metadata={\"path\":\"$work/execd/$size\"};filename=metadata" -F "file=@$src;filename=f" "$E/files/upload"; done | median)
  nu=$(for _ in $(seq $n); do curl -sf -o /dev/null -w '%{time_total}\n' -T "$src" "$N/$size"; done | median)
  ed=$(for _ in $(seq $n); do curl -sf -o /dev/null -w '%{time_total}\n' "$E/files/download?path=$work/execd/$size"; done | median)
  nd=$(for _ in $(seq $n); do curl -sf -o /dev/null -w '%{time_total}\n' "$N/$size"; done | median)
  [ $size = 1G ] && hwm_after=$(hwm)
  ju="-"; jd="-"
  if [ -n "$JPID" ] && { [ $size = 1M ] || [ $size = 10M ]; }; then
    python3 - "$src" "$work/body.json" <<'PY'
import base64, json, sys
data = open(sys.argv[1], 'rb').read()
json.dump({"type": "file", "format": "base64", "content": base64.b64encode(data).decode()}, open(sys.argv[2], 'w'))
PY
    ju=$(for _ in $(seq $n); do curl -sf -o /dev/null -w '%{time_total}\n' -X PUT -H 'Authorization: token t' \
          -H 'Content-Type: application/json' --data-binary @"$work/body.json" "$J/api/contents/$size"; done | median)
    jd=$(for _ in $(seq $n); do curl -sf -o /dev/null -w '%{time_total}\n' -H 'Authorization: token t' \
          "$J/api/contents/$size?content=1&format=base64&type=file"; done | median)
    ju=$(t_ms "$ju"); jd=$(t_ms "$jd")
  fi
  cmp -s "$src" "$work/execd/$size" || { echo "bench: execd stored a different $size file"; exit 1; }
  UP[$size]=$(ratio "$eu" "$nu"); DOWN[$size]=$(ratio "$ed" "$nd")
  printf '%-6s %10sms %10sms %10s%2s %8s %10sms %10sms %10s%2s %8s\n' "$size" "$(t_ms "$eu")" "$(t_ms "$nu")" "$ju" \
    "$([ "$ju" = - ] && echo '' || echo ms)" "${UP[$size]}" "$(t_ms "$ed")" "$(t_ms "$nd")" "$jd" \
    "$([ "$jd" = - ] && echo '' || echo ms)" "${DOWN[$size]}"
  [ $size = 1M ] && up1m_p50=$(t_ms "$eu")
done
# The floor: the same 1 MiB multipart upload with curl to a server that discards it.
SPORT=$(free_port)
python3 "$here/discard_server.py" "$SPORT" & SINK_PID=$!
sleep 0.3
floor=$(for _ in $(seq 50); do curl -sf -o /dev/null -w '%{time_total}\n' \
          -F "metadata={};filename=metadata" -F "file=@$work/src/1M;filename=f" "http://127.0.0.1:$SPORT/"; done | median)
kill $SINK_PID; SINK_PID=""
echo "1 MiB upload floor (curl to a server that discards the body): $(t_ms "$floor")ms; execd adds $(awk -v a="$up1m_p50" -v f="$(t_ms "$floor")" 'BEGIN { printf "%.1f", a - f }')ms"
growth=$(awk -v a="$hwm_after" -v b="$hwm_before" 'BEGIN { printf "%.1f", (a - b) / 1024 }')
echo "== targets"
echo "10 MiB upload within 1.5x nginx: ${UP[10M]} -> $(verdict "${UP[10M]} <= 1.5")"
echo "10 MiB download within 1.5x nginx: ${DOWN[10M]} -> $(verdict "${DOWN[10M]} <= 1.5")"
echo "1 GB upload within 1.5x nginx: ${UP[1G]} -> $(verdict "${UP[1G]} <= 1.5")"
echo "1 GB download within 1.5x nginx: ${DOWN[1G]} -> $(verdict "${DOWN[1G]} <= 1.5")"
echo "peak RSS growth during the 1 GB transfers < 16 MiB: $growth MiB -> $(verdict "$growth < 16")"
echo "1 MiB upload p50 < 3 ms: $up1m_p50 ms -> $(verdict "$up1m_p50 < 3")"
