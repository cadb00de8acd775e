#!/usr/bin/env bash
# The docker backend's create and delete (issue 12, "Benchmarks"), beside floors measured
# in the same run on the same engine and image:
#   gateway      POST /v1/sandboxes (docker backend) until the sandbox's execd answers
#                /ping through the gateway's proxy; then DELETE /v1/sandboxes/{id} (204)
#   cli floor    `docker run -d` of the same image, the same bundle mount and the same
#                command (start.sh: execd alone), on a network made once, until its execd
#                answers /ping at the container's address; then `docker rm -f`
#   api floor    the same container through the Engine API the backend speaks (create,
#                start, inspect over the unix socket: no CLI process), until /ping; then
#                DELETE /containers/{id}?force=true
#   api+network  the api floor on a network made for it, as the backend gives each
#                sandbox its own (create network, create, start, inspect; delete both)
#   run --rm true  `docker run --rm IMAGE true`: the engine's own start-and-reap floor
# Runs are interleaved (one of each per round, after one warm-up round) so that load on
# the shared machine falls on all of them alike; p50/p90 over RUNS and ratios are printed.
# The engine is a private dockerd (its own --data-root, --exec-root and socket, as
# tests/support/private_dockerd.cpp starts it), the image a `docker import` of a tree
# holding only a static busybox (nothing is pulled), execd comes from tools/make_bundle.sh
# of BUILD's execd; all of it is stopped and removed at exit.
#   bash bench/bench_docker_create.sh [BUILD]     (root; RUNS=N, default 20)
set -euo pipefail
BUILD=${1:-build}
RUNS=${RUNS:-20}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
source "$here/lib.sh"

[ "$(id -u)" = 0 ] || { echo "bench_docker_create: needs root (it starts a private dockerd)"; exit 1; }
[ -x "$BUILD/execd-gateway" ] || { echo "bench_docker_create: no $BUILD/execd-gateway (ninja -C $BUILD)"; exit 1; }
if [ ! -x /bin/busybox ] || ldd /bin/busybox >/dev/null 2>&1; then
  echo "bench_docker_create: needs a static /bin/busybox (busybox-static)"; exit 1
fi

# A short path: the socket's must fit sockaddr_un, and /tmp is local (overlay2 needs that).
work=$(mktemp -d /tmp/execd-bench-docker-XXXXXX)
sock="$work/docker.sock"
export DOCKER_HOST="unix://$sock"
IMAGE=execd-bench-busybox:latest
KEY=bench-key
DOCKERD_PID=""; GW_PID=""

cleanup() {
  set +e
  if [ -n "$GW_PID" ]; then kill "$GW_PID" 2>/dev/null; wait "$GW_PID" 2>/dev/null; fi
  if [ -n "$DOCKERD_PID" ]; then
    # Containers and networks first (quicker than dockerd's own stop-everything).
    ids=$(docker ps -aq 2>/dev/null); [ -n "$ids" ] && docker rm -f $ids >/dev/null 2>&1
    nets=$(docker network ls -q --filter type=custom 2>/dev/null); [ -n "$nets" ] && docker network rm $nets >/dev/null 2>&1
    kill "$DOCKERD_PID" 2>/dev/null
    for _ in $(seq 200); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$DOCKERD_PID" 2>/dev/null && kill -KILL -- "-$DOCKERD_PID" 2>/dev/null
    wait "$DOCKERD_PID" 2>/dev/null
  fi
  # overlay2 and containerd leave mounts under the data and exec roots; deepest first.
  awk -v d="$work/" 'index($5, d) == 1 { print length($5), $5 }' /proc/self/mountinfo | sort -rn |
    cut -d' ' -f2- | while read -r m; do umount -l "$m" 2>/dev/null; done
  [ -n "${KEEP_WORK:-}" ] && echo "kept $work" || rm -rf "$work"
}
trap cleanup EXIT

# The private dockerd: the same flags as tests/support/private_dockerd.cpp (no default
# bridge, no iptables, its own address pool).
octet=$((128 + $$ % 120))
setsid /usr/sbin/dockerd --data-root="$work/data" --exec-root="$work/exec" --pidfile="$work/docker.pid" \
  --host="unix://$sock" --bridge=none --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false \
  --userland-proxy=false "--default-address-pool=base=10.$octet.0.0/16,size=24" --log-level=warn \
  --shutdown-timeout=5 </dev/null >"$work/dockerd.log" 2>&1 &
DOCKERD_PID=$!
for _ in $(seq 600); do
  [ -S "$sock" ] && curl -s --max-time 2 --unix-socket "$sock" http://d/_ping 2>/dev/null | grep -q OK && break
  kill -0 "$DOCKERD_PID" 2>/dev/null || { echo "dockerd exited:"; cat "$work/dockerd.log"; exit 1; }
  sleep 0.1
done
curl -s --max-time 2 --unix-socket "$sock" http://d/_ping | grep -q OK || { echo "dockerd did not answer:"; cat "$work/dockerd.log"; exit 1; }

# The image: a static busybox and its applets, nothing else (as import_busybox_image).
tree="$work/tree"
mkdir -p "$tree"/{bin,tmp,etc,proc,sys,dev,root}
chmod 1777 "$tree/tmp"
cp /bin/busybox "$tree/bin/busybox"
for applet in $(/bin/busybox --list); do [ "$applet" = busybox ] || ln -s busybox "$tree/bin/$applet"; done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' > "$tree/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$tree/etc/group"
tar -C "$tree" -cf - . | docker import - "$IMAGE" >/dev/null
"$root/tools/make_bundle.sh" "$BUILD/execd" "$work/bundle" >/dev/null

# The private dockerd runs without iptables; the gateway must not touch the host's firewall either.
mkdir -p "$work/gw"
"$BUILD/execd-gateway" --port 0 --api-key "$KEY" --state-dir "$work/gw" --backend docker --docker-host "$DOCKER_HOST" \
  --execd-bundle "$work/bundle" --docker-host-firewall off 2>"$work/gw.log" &
GW_PID=$!
for _ in $(seq 200); do
  GW_PORT=$(grep -oE 'listening on [^ ]+:[0-9]+' "$work/gw.log" | grep -oE '[0-9]+$' || true)
  [ -n "$GW_PORT" ] && break
  sleep 0.05
done
[ -n "${GW_PORT:-}" ] || { echo "execd-gateway did not start:"; cat "$work/gw.log"; exit 1; }
docker network create execd-bench-floor >/dev/null

echo "== docker backend: create until /ping, and delete ($RUNS runs each, interleaved; load average $(cut -d' ' -f1-3 /proc/loadavg))"
python3 - "$GW_PORT" "$KEY" "$sock" "$IMAGE" "$work/bundle" "$RUNS" <<'PY'
import datetime, http.client, json, socket, subprocess, sys, time

gw_port, key, sock, image, bundle, runs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6])
TOKEN = "bench-floor-token"
EXECD_PORT = 44772
START = ["/opt/execd/busybox", "sh", "/opt/execd/start.sh", str(EXECD_PORT), TOKEN]


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=60)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(60)
        self.sock.connect(self.path)


def call(conn, method, target, body=None, headers=None):
    h = dict(headers or {})
    data = None
    if body is not None:
        data = json.dumps(body)
        h["Content-Type"] = "application/json"
    conn.request(method, target, body=data, headers=h)
    r = conn.getresponse()
    return r.status, r.read()


def engine(method, target, body=None):
    c = UnixConnection(sock)
    try:
        return call(c, method, target, body)
    finally:
        c.close()


def wait_ping(host, port, target, headers, limit=60.0):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        c = http.client.HTTPConnection(host, port, timeout=2)
        try:
            status, _ = call(c, "GET", target, headers=headers)
            if status == 200:
                return
        except OSError:
            pass
        finally:
            c.close()
        time.sleep(0.002)
    raise SystemExit(f"no /ping from {host}:{port}{target} within {limit} s")


def container_ip(cid, network):
    status, body = engine("GET", f"/containers/{cid}/json")
    if status != 200:
        raise SystemExit(f"inspect {cid}: {status} {body[:200]}")
    return json.loads(body)["NetworkSettings"]["Networks"][network]["IPAddress"]


GW = {"OPEN-SANDBOX-API-KEY": key}
internal = []


def rfc3339(text):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def gateway():
    t0 = time.monotonic()
    c = http.client.HTTPConnection("127.0.0.1", int(gw_port), timeout=60)
    status, body = call(c, "POST", "/v1/sandboxes", {"image": {"uri": image}, "timeout": 3600}, GW)
    c.close()
    if status != 202:
        raise SystemExit(f"gateway create: {status} {body[:300]}")
    sid = json.loads(body)["id"]
    wait_ping("127.0.0.1", int(gw_port), f"/v1/sandboxes/{sid}/proxy/{EXECD_PORT}/ping", GW)
    t1 = time.monotonic()
    # The gateway's own view: accepted (createdAt) to Running (lastTransitionAt).
    c = http.client.HTTPConnection("127.0.0.1", int(gw_port), timeout=60)
    status, body = call(c, "GET", f"/v1/sandboxes/{sid}", headers=GW)
    c.close()
    seen = json.loads(body)
    internal.append((rfc3339(seen["status"]["lastTransitionAt"]) - rfc3339(seen["createdAt"])) * 1000)
    c = http.client.HTTPConnection("127.0.0.1", int(gw_port), timeout=60)
    status, body = call(c, "DELETE", f"/v1/sandboxes/{sid}", headers=GW)
    c.close()
    if status != 204:
        raise SystemExit(f"gateway delete: {status} {body[:300]}")
    return t1 - t0, time.monotonic() - t1


def cli_floor():
    t0 = time.monotonic()
    cid = subprocess.run(["docker", "run", "-d", "--network", "execd-bench-floor", "-v", f"{bundle}:/opt/execd:ro",
                          "--entrypoint", START[0], image] + START[1:],
                         check=True, capture_output=True, text=True).stdout.strip()
    wait_ping(container_ip(cid, "execd-bench-floor"), EXECD_PORT, "/ping", {"X-EXECD-ACCESS-TOKEN": TOKEN})
    t1 = time.monotonic()
    subprocess.run(["docker", "rm", "-f", cid], check=True, capture_output=True)
    return t1 - t0, time.monotonic() - t1


def expect(status, body, want, what):
    if status != want:
        raise SystemExit(f"engine {what}: {status} {body[:300]}")


def api_floor(own_network=False):
    """The Engine API calls the backend makes: create, start, /ping, then delete; with
    own_network, a network of its own made before and removed after, as the backend does."""
    t0 = time.monotonic()
    network = "execd-bench-floor"
    if own_network:
        network = f"execd-bench-net-{time.monotonic_ns()}"
        expect(*engine("POST", "/networks/create", {"Name": network, "CheckDuplicate": True}), 201, "network create")
    spec = {"Image": image, "Entrypoint": START[:1], "Cmd": START[1:],
            "HostConfig": {"Binds": [f"{bundle}:/opt/execd:ro"], "NetworkMode": network}}
    status, body = engine("POST", "/containers/create", spec)
    expect(status, body, 201, "create")
    cid = json.loads(body)["Id"]
    expect(*engine("POST", f"/containers/{cid}/start"), 204, "start")
    wait_ping(container_ip(cid, network), EXECD_PORT, "/ping", {"X-EXECD-ACCESS-TOKEN": TOKEN})
    t1 = time.monotonic()
    expect(*engine("DELETE", f"/containers/{cid}?force=true"), 204, "delete")
    if own_network:
        expect(*engine("DELETE", f"/networks/{network}"), 204, "network delete")
    return t1 - t0, time.monotonic() - t1


def api_network_floor():
    return api_floor(own_network=True)


def run_true():
    t0 = time.monotonic()
    subprocess.run(["docker", "run", "--rm", image, "true"], check=True, capture_output=True)
    return time.monotonic() - t0, None


kinds = [("gateway", gateway), ("cli floor", cli_floor), ("api floor", api_floor), ("api+network", api_network_floor),
         ("run --rm true", run_true)]
for _, f in kinds:  # warm-up round: first-use costs (image layers, page cache) are not measured
    f()
create = {k: [] for k, _ in kinds}
delete = {k: [] for k, _ in kinds}
for _ in range(runs):
    for k, f in kinds:
        c, d = f()
        create[k].append(c * 1000)
        if d is not None:
            delete[k].append(d * 1000)


def pct(v, p):
    s = sorted(v)
    return s[min(len(s) - 1, int(p * len(s)))]


print(f"{'create until /ping, ms':36} {'p50':>8} {'p90':>8}")
names = {"gateway": "gateway POST -> /ping via proxy", "cli floor": "docker run -d -> /ping",
         "api floor": "engine API create+start -> /ping", "api+network": "the same on its own network",
         "run --rm true": "docker run --rm IMAGE true"}
for k, _ in kinds:
    print(f"{names[k]:36} {pct(create[k], .5):8.1f} {pct(create[k], .9):8.1f}")
internal = internal[1:]  # the warm-up round's
print(f"{'  the gateway: accepted -> Running':36} {pct(internal, .5):8.1f} {pct(internal, .9):8.1f}")
print(f"{'delete, ms':36} {'p50':>8} {'p90':>8}")
dnames = {"gateway": "gateway DELETE (container+network)", "cli floor": "docker rm -f",
          "api floor": "engine API DELETE ?force=true", "api+network": "the same, then its network"}
for k in ("gateway", "cli floor", "api floor", "api+network"):
    print(f"{dnames[k]:36} {pct(delete[k], .5):8.1f} {pct(delete[k], .9):8.1f}")
g = pct(create["gateway"], .5)
print("== ratios (p50)")
for k in ("cli floor", "api floor", "api+network", "run --rm true"):
    print(f"gateway create / {k}: {g / pct(create[k], .5):.2f}")
gd = pct(delete["gateway"], .5)
for k in ("cli floor", "api floor", "api+network"):
    print(f"gateway delete / {k} delete: {gd / pct(delete[k], .5):.2f}")
PY
