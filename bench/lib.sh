# Shared helpers for bench/bench_*.sh (sourced, not run).

# A free TCP port on loopback.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Starts build/execd with extra flags on a free port; sets EXECD_PID and EXECD_PORT.
start_execd() {
  local build=$1; shift
  EXECD_LOG=$(mktemp)
  "$build/execd" --port 0 --log-level info "$@" 2>"$EXECD_LOG" &
  EXECD_PID=$!
  for _ in $(seq 100); do
    EXECD_PORT=$(grep -oE 'listening on [^ ]+:[0-9]+' "$EXECD_LOG" | grep -oE '[0-9]+$' || true)
    [ -n "$EXECD_PORT" ] && return 0
    sleep 0.05
  done
  echo "execd did not start:"; cat "$EXECD_LOG"; exit 1
}

stop_execd() { kill "$EXECD_PID" 2>/dev/null; wait "$EXECD_PID" 2>/dev/null; rm -f "$EXECD_LOG"; }

rss_mib() { awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }
# Memory the process allocated (heap, stacks): RSS without the pages of mapped files
# (binary, libraries), whose count depends on the page cache and on other processes.
anon_mib() { awk '/RssAnon/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }

# wrk's figures as "req_per_s p50_ms p99_ms".
wrk_figures() {
  local out; out=$(wrk "$@" --latency 2>&1)
  local rps p50 p99
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1=="50%" {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  echo "$rps $(to_ms "$p50") $(to_ms "$p99")"
}

# "85.00us" / "1.20ms" / "2.00s" -> milliseconds.
to_ms() {
  echo "$1" | awk '{ v=$1; if (v ~ /us$/) { sub(/us$/,"",v); printf "%.3f", v/1000 }
                     else if (v ~ /ms$/) { sub(/ms$/,"",v); printf "%.3f", v }
                     else if (v ~ /s$/) { sub(/s$/,"",v); printf "%.3f", v*1000 } }'
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a/b; else print "n/a" }'; }
# verdict "1.3 <= 1.5" -> PASS / MISS (the expression is evaluated by awk).
verdict() { if awk "BEGIN { exit !($1) }"; then echo PASS; else echo MISS; fi; }

# Starts nginx (one worker, the peer for HTTP and files) serving WORK/www on a free port;
# sets NGINX_PORT. Extra directives for `location /` come as the second argument.
# Directories are opened to the workers, which run as www-data.
start_nginx() {
  local work=$1 location_extra=${2:-}
  NGINX_PORT=$(free_port)
  mkdir -p "$work/www" "$work/tmp"
  chmod 755 "$work"; chmod 777 "$work/www" "$work/tmp"
  cat > "$work/nginx.conf" <<CONF
worker_processes 1;
daemon on;
pid $work/nginx.pid;
error_log $work/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/tmp; proxy_temp_path $work/tmp; fastcgi_temp_path $work/tmp;
  uwsgi_temp_path $work/tmp; scgi_temp_path $work/tmp;
  client_max_body_size 0;
  server { listen 127.0.0.1:$NGINX_PORT; location / { root $work/www; $location_extra } }
}
CONF
  nginx -c "$work/nginx.conf" -p "$work"
  sleep 0.3
}
