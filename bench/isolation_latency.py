#!/usr/bin/env python3
"""Per-execution cost of isolation through the daemon, interleaved in one run so the
levels compare like with like on a loaded machine: POST /command `true` at none, process
and namespace; a run in a plain session and in a namespace-level session; beside bare
spawns of `bash -c true` and of Isolator-like `bwrap ... bash -c true` from this client.
Usage: isolation_latency.py PORT [ROUNDS]"""
import http.client
import json
import statistics
import subprocess
import sys
import time

port = int(sys.argv[1])
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 200
conn = http.client.HTTPConnection("127.0.0.1", port)


def post(path, body):
    conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    data = r.read()
    if r.status != 200 or (b"execution_complete" not in data and path != "/session"):
        raise SystemExit(f"{path} {body}: {r.status} {data[:300]!r}")
    return data


def session(level):
    body = {} if level == "none" else {"isolation": level}
    return json.loads(post("/session", body))["session_id"]


BWRAP = ["/usr/bin/bwrap", "--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-net",
         "--die-with-parent", "--new-session", "--cap-drop", "ALL", "--ro-bind", "/usr", "/usr", "--symlink", "usr/bin",
         "/bin", "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64", "--dev", "/dev", "--proc", "/proc",
         "--tmpfs", "/tmp", "--clearenv", "--", "/bin/bash", "-c", "true"]
cases = {
    "bare spawn bash -c true": lambda: subprocess.run(["/bin/bash", "-c", "true"], check=True),
    "bare bwrap ... bash -c true": lambda: subprocess.run(BWRAP, check=True),
    "command, none": lambda: post("/command", {"command": "true"}),
    "command, process": lambda: post("/command", {"command": "true", "isolation": "process"}),
    "command, process + limits": lambda: post("/command", {"command": "true", "isolation": "process",
                                                          "memory_limit_mb": 256, "max_processes": 64}),
    "command, namespace": lambda: post("/command", {"command": "true", "isolation": "namespace"}),
}
plain, sandboxed = session("none"), session("namespace")
cases["session run, plain session"] = lambda: post(f"/session/{plain}/run", {"command": "true"})
cases["session run, namespace session"] = lambda: post(f"/session/{sandboxed}/run", {"command": "true"})

times = {name: [] for name in cases}
for fn in cases.values():
    fn()  # warm: the first isolated request probes the host
for _ in range(rounds):
    for name, fn in cases.items():
        t0 = time.perf_counter()
        fn()
        times[name].append((time.perf_counter() - t0) * 1000)

med = {n: statistics.median(v) for n, v in times.items()}
print(f"isolation_latency: {rounds} interleaved rounds, median ms (p90)")
for n, v in times.items():
    p90 = sorted(v)[int(len(v) * 0.9)]
    print(f"  {n:34s} {med[n]:8.3f}  ({p90:.3f})")
print(f"  process - none:                    {med['command, process'] - med['command, none']:+.3f} ms")
print(f"  process+limits - none:             {med['command, process + limits'] - med['command, none']:+.3f} ms")
print(f"  namespace - none:                  {med['command, namespace'] - med['command, none']:+.3f} ms")
print(f"  bare bwrap - bare spawn:           {med['bare bwrap ... bash -c true'] - med['bare spawn bash -c true']:+.3f} ms")
print(f"  (namespace - none) - (bwrap - spawn): "
      f"{(med['command, namespace'] - med['command, none']) - (med['bare bwrap ... bash -c true'] - med['bare spawn bash -c true']):+.3f} ms")
print(f"  namespace session run - plain run: {med['session run, namespace session'] - med['session run, plain session']:+.3f} ms")
