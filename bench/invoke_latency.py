#!/usr/bin/python3
"""POST /invoke round trips (issue 13), in one run: `def handler(e): return e` warm (forked
by the zygote) and cold (start: cold, a fresh interpreter), beside `python3 -I -c` running
the same handler on the same event (the reference a cold start is measured against);
throughput at concurrency 8, warm and cold; the RSS and PSS of the idle zygote and the
daemon's RSS before the first invocation and after.
Usage: invoke_latency.py EXECD_PORT EXECD_PID [RUNS]"""
import http.client
import json
import os
import shutil
import subprocess
import sys
import threading
import time

PORT = int(sys.argv[1])
DAEMON = int(sys.argv[2])
RUNS = int(sys.argv[3]) if len(sys.argv) > 3 else 300
CODE = "def handler(e): return e"
EVENT = {"n": 1, "s": "x"}
PY = shutil.which("python3")


def pct(values):
    values = sorted(values)
    return values[len(values) // 2] * 1000, values[min(len(values) - 1, len(values) * 99 // 100)] * 1000


def status_kib(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return -1


def pss_kib(pid):
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return -1


def zygotes():
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if ppid == DAEMON and b"execd-zygote" in cmd:
            out.append(int(d))
    return out


def invoke(conn, start):
    body = json.dumps({"code": CODE, "event": EVENT, "start": start})
    t0 = time.perf_counter()
    conn.request("POST", "/invoke", body=body, headers={"Content-Type": "application/json"})
    doc = json.loads(conn.getresponse().read())
    elapsed = time.perf_counter() - t0
    assert doc["status"] == "success" and doc["return_value"] == EVENT, doc
    return elapsed, doc["start"]


def series(start, runs):
    conn = http.client.HTTPConnection("127.0.0.1", PORT)
    times, starts = [], {}
    for _ in range(runs):
        t, s = invoke(conn, start)
        times.append(t)
        starts[s] = starts.get(s, 0) + 1
    return times, starts


def python_c(runs):
    # The same handler on the same event, its result written to stdout: what a cold start
    # costs without execd in between.
    prog = ("import json, sys\n" + CODE + "\nsys.stdout.write(json.dumps(handler(json.loads(sys.stdin.read()))))\n")
    event = json.dumps(EVENT).encode()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        out = subprocess.run([PY, "-I", "-c", prog], input=event, stdout=subprocess.PIPE, check=True).stdout
        times.append(time.perf_counter() - t0)
        assert json.loads(out) == EVENT
    return times


# The floor of any fork server on this machine: a python3 holding the zygote's imports
# (gc-frozen as the zygote is) forks a child that runs the handler on the event inline
# and _exits. No execd, no HTTP, no descriptor passing, no isolation: what a fork and a
# child's copy-on-write faults cost by themselves.
FORK_FLOOR = r"""
import sys, os, gc, json, traceback, inspect, socket, signal, select, resource, ctypes, atexit
import re, datetime, collections, base64, hashlib, math, time, typing, functools, itertools
gc.freeze()
CODE, EVENT, RUNS = sys.argv[1], sys.argv[2], int(sys.argv[3])
times = []
for _ in range(RUNS):
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        g = {}
        exec(compile(CODE, "<handler>", "exec"), g)
        json.dumps({"ok": True, "value": g["handler"](json.loads(EVENT))})
        os._exit(0)
    os.waitpid(pid, 0)
    times.append(time.perf_counter() - t0)
print(json.dumps(times))
"""


def fork_floor(runs):
    out = subprocess.run([PY, "-I", "-c", FORK_FLOOR, CODE, json.dumps(EVENT), str(runs)], stdout=subprocess.PIPE,
                         check=True).stdout
    return json.loads(out)


def throughput(start, total, clients=8):
    done = [0]
    lock = threading.Lock()

    def worker():
        conn = http.client.HTTPConnection("127.0.0.1", PORT)
        while True:
            with lock:
                if done[0] >= total:
                    return
                done[0] += 1
            invoke(conn, start)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return total / (time.perf_counter() - t0)


idle_before = status_kib(DAEMON, "VmRSS")
assert not zygotes(), "a zygote before the first invocation"
# Warm-up: the first invocation starts the zygote.
series("warm", 5)
warm, warm_starts = series("warm", RUNS)
cold, cold_starts = series("cold", max(RUNS // 3, 20))
ref = python_c(max(RUNS // 3, 20))
floor = fork_floor(RUNS)
w50, w99 = pct(warm)
f50, f99 = pct(floor)
c50, c99 = pct(cold)
r50, r99 = pct(ref)
print(f"invoke warm   p50 {w50:7.2f} ms  p99 {w99:7.2f} ms  ({len(warm)} runs, starts {warm_starts})")
print(f"invoke cold   p50 {c50:7.2f} ms  p99 {c99:7.2f} ms  ({len(cold)} runs, starts {cold_starts})")
print(f"python3 -I -c p50 {r50:7.2f} ms  p99 {r99:7.2f} ms  ({len(ref)} runs, {PY}; the reference)")
print(f"fork floor    p50 {f50:7.2f} ms  p99 {f99:7.2f} ms  ({len(floor)} runs: fork + handler inline + _exit, "
      f"no execd)")
print(f"ratio warm/fork-floor p50 {w50 / f50:.2f}")
print(f"ratio warm/python3-c p50 {w50 / r50:.2f}; cold/python3-c p50 {c50 / r50:.2f}; "
      f"warm p50 < 5 ms: {'PASS' if w50 < 5 else 'MISS'}")
tw = throughput("warm", max(RUNS, 200))
tc = throughput("cold", max(RUNS // 3, 60))
print(f"throughput at concurrency 8: warm {tw:.1f}/s, cold {tc:.1f}/s (ratio {tw / tc:.2f})")
time.sleep(1)
zs = zygotes()
assert len(zs) == 1, zs
z = zs[0]
print(f"idle zygote: RSS {status_kib(z, 'VmRSS') / 1024:.1f} MiB, PSS {pss_kib(z) / 1024:.1f} MiB; "
      f"daemon RSS {idle_before / 1024:.1f} MiB idle before the first invocation, "
      f"{status_kib(DAEMON, 'VmRSS') / 1024:.1f} MiB after")
policy = "SCHED_FIFO" if os.sched_getscheduler(0) == os.SCHED_FIFO else "SCHED_OTHER"
print(f"load average during the run: {open('/proc/loadavg').read().split()[0]} on {os.cpu_count()} cores; "
      f"scheduling: {policy}")
