#!/usr/bin/env python3
"""Create -> Running from the gateway's warm pool beside a cold create, in one run.

    python3 bench/gateway_pool_claim.py GATEWAY_BINARY EXECD_BINARY [runs]   (root: cgroups)

Starts an execd-gateway (process backend, `--pool host=2`, its own state directory and
port), then per round: one create that matches the pool (image `host`, nothing else),
timed from the POST until a GET says Running, and one cold create (an `env` makes it not
match), timed the same way; each sandbox is deleted and the pool given time to refill
before the next round. Prints p50/p90 of both and their ratio; target: pool < 10 ms.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import http.client

KEY = "pool-bench-key"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(port, method, path, body=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    c.request(method, path, body=json.dumps(body) if body is not None else None,
              headers={"OPEN-SANDBOX-API-KEY": KEY, "Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, (json.loads(data) if data else None)


def create_until_running(port, body):
    t0 = time.perf_counter()
    status, doc = call(port, "POST", "/v1/sandboxes", body)
    assert status == 202, (status, doc)
    sid = doc["id"]
    while True:
        _, s = call(port, "GET", "/v1/sandboxes/" + sid)
        if s["status"]["state"] == "Running":
            return sid, (time.perf_counter() - t0) * 1000
        assert s["status"]["state"] in ("Pending",), s
        time.sleep(0.001)


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


def main():
    gateway, execd = sys.argv[1], sys.argv[2]
    runs = int(sys.argv[3]) if len(sys.argv) > 3 else 20
    state = tempfile.mkdtemp(prefix="execd-pool-bench-")
    port = free_port()
    gw = subprocess.Popen([gateway, "--port", str(port), "--api-key", KEY, "--state-dir", state,
                           "--execd-bin", execd, "--pool", "host=2", "--log-level", "warn"])
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if call(port, "GET", "/health")[0] == 200:
                    break
            except OSError:
                time.sleep(0.05)
        pooled, cold = [], []
        for _ in range(runs):
            time.sleep(1.0)  # the pool refills off the request path
            sid, ms = create_until_running(port, {"image": {"uri": "host"}, "timeout": 600})
            pooled.append(ms)
            call(port, "DELETE", "/v1/sandboxes/" + sid)
            sid, ms = create_until_running(port, {"image": {"uri": "host"}, "timeout": 600, "env": {"COLD": "1"}})
            cold.append(ms)
            call(port, "DELETE", "/v1/sandboxes/" + sid)
        print(f"runs: {runs}")
        print(f"create -> Running from the pool: p50 {pct(pooled, 0.5):.2f} ms  p90 {pct(pooled, 0.9):.2f} ms")
        print(f"create -> Running cold:          p50 {pct(cold, 0.5):.2f} ms  p90 {pct(cold, 0.9):.2f} ms")
        print(f"pool / cold (p50): {pct(pooled, 0.5) / pct(cold, 0.5):.3f}; target pool < 10 ms: "
              f"{'PASS' if pct(pooled, 0.5) < 10 else 'MISS'}")
    finally:
        gw.send_signal(signal.SIGTERM)
        try:
            gw.wait(30)
        except subprocess.TimeoutExpired:
            gw.kill()
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
