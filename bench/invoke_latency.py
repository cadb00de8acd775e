#!/usr/bin/python3
"""POST /invoke round trips (issue 13), in one run: `def handler(e): return e` warm (forked
by the zygote) and cold (start: cold, a fresh interpreter), beside `python3 -I -c` running
the same handler on the same event (the reference a cold start is measured against) and
the fork floor, interleaved round by round so all four see the same load;
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
# THINK_MS: a pause between one warm invocation's answer and the next request (a caller
# that does something with the result); 0, back to back, by default.
THINK = float(os.environ.get("THINK_MS", "0")) / 1000
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


def daemon_children(marker):
    """(pid, cmdline) of the daemon's children whose command line holds `marker`."""
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
        if ppid == DAEMON and marker in cmd:
            out.append((int(d), cmd))
    return out


def zygotes():
    return [pid for pid, _ in daemon_children(b"execd-zygote")]


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
CODE, EVENT, RUNS, THINK = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
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
    time.sleep(THINK)
print(json.dumps(times))
"""


def fork_floor(runs):
    out = subprocess.run([PY, "-I", "-c", FORK_FLOOR, CODE, json.dumps(EVENT), str(runs), str(THINK)], stdout=subprocess.PIPE,
                         check=True).stdout
    return json.loads(out)


def interleaved(runs):
    # Warm, cold, python3 -c and the floor in alternating rounds, so that each sees the
    # same machine load (on a shared machine it changes by the minute): per round 5 warm,
    # 5 forks of the floor, 2 cold, 2 python3 -c.
    conn = http.client.HTTPConnection("127.0.0.1", PORT)
    warm, cold, ref, floor, starts = [], [], [], [], {}
    for _ in range(max(runs // 5, 4)):
        for _ in range(5):
            t, s = invoke(conn, "warm")
            warm.append(t)
            starts[s] = starts.get(s, 0) + 1
            time.sleep(THINK)
        floor += fork_floor(5)
        for _ in range(2):
            t, s = invoke(conn, "cold")
            cold.append(t)
            starts[s] = starts.get(s, 0) + 1
        ref += python_c(2)
    return warm, cold, ref, floor, starts


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


# JavaScript and TypeScript (node spares): warm (a node started ahead, waiting for its
# request) and cold (start: cold, node started per invocation), beside `node -e` running
# the same handler on the same event with no execd (the reference), interleaved one of
# each per round: a spare taken by one warm invocation is replaced while the cold one and
# the reference run, as it would be between the requests of a caller that does something
# with each answer.
NODE = shutil.which("node")
TS_MODULE = os.environ.get("EXECD_TYPESCRIPT_MODULE", "")
JS_CODE = "exports.handler = (e) => e;"
TS_CODE = "export function handler(e: {n: number, s: string}): {n: number, s: string} { return e; }"


def node_spares():
    return [(pid, b"EXECD_TS = true" in cmd) for pid, cmd in daemon_children(b"execd-node-spare")]


def invoke_js(conn, language, code, start):
    body = json.dumps({"code": code, "event": EVENT, "start": start, "language": language})
    t0 = time.perf_counter()
    conn.request("POST", "/invoke", body=body, headers={"Content-Type": "application/json"})
    doc = json.loads(conn.getresponse().read())
    elapsed = time.perf_counter() - t0
    assert doc["status"] == "success" and doc["return_value"] == EVENT, doc
    return elapsed, doc["start"]


def node_e(runs, language, code):
    # The same handler on the same event, its result written to stdout; TypeScript
    # compiled first with the same compiler, as the handler bootstrap does.
    compile_ts = ""
    if language == "typescript":
        compile_ts = ("const ts = require(process.env.EXECD_TYPESCRIPT_MODULE);"
                      "code = ts.transpileModule(code, {compilerOptions: {module: ts.ModuleKind.CommonJS,"
                      " target: ts.ScriptTarget.ES2020}}).outputText;")
    prog = (f"let code = {json.dumps(code)};" + compile_ts +
            "const module = {exports: {}}; new Function('module', 'exports', 'require', code)(module, module.exports, require);"
            "process.stdout.write(JSON.stringify(module.exports.handler(JSON.parse(require('fs').readFileSync(0, 'utf8')))));")
    event = json.dumps(EVENT).encode()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        out = subprocess.run([NODE, "-e", prog], input=event, stdout=subprocess.PIPE, check=True,
                             env={"PATH": os.environ["PATH"], "EXECD_TYPESCRIPT_MODULE": TS_MODULE}).stdout
        times.append(time.perf_counter() - t0)
        assert json.loads(out) == EVENT
    return times


def js_interleaved(language, code, rounds):
    conn = http.client.HTTPConnection("127.0.0.1", PORT)
    invoke_js(conn, language, code, "warm")  # the first starts cold and the spares
    time.sleep(3 if language == "typescript" else 1)
    warm, cold, ref, starts = [], [], [], {}
    for _ in range(rounds):
        t, s = invoke_js(conn, language, code, "warm")
        warm.append(t)
        starts[s] = starts.get(s, 0) + 1
        ref += node_e(1, language, code)
        t, s = invoke_js(conn, language, code, "cold")
        cold.append(t)
    return warm, cold, ref, starts


def node_part():
    parts = [("javascript", JS_CODE, int(os.environ.get("JS_RUNS", "60")))]
    if TS_MODULE:
        parts.append(("typescript", TS_CODE, int(os.environ.get("TS_RUNS", "20"))))
    for language, code, rounds in parts:
        warm, cold, ref, starts = js_interleaved(language, code, rounds)
        w50, w99 = pct(warm)
        c50, c99 = pct(cold)
        r50, r99 = pct(ref)
        print(f"{language:10} warm p50 {w50:7.2f} ms  p99 {w99:7.2f} ms  ({len(warm)} runs: {starts})")
        print(f"{language:10} cold p50 {c50:7.2f} ms  p99 {c99:7.2f} ms  ({len(cold)} runs)")
        print(f"{language:10} node -e p50 {r50:7.2f} ms  p99 {r99:7.2f} ms  ({len(ref)} runs, {NODE}; the reference)")
        print(f"{language:10} ratio warm/node-e p50 {w50 / r50:.2f}; cold/node-e p50 {c50 / r50:.2f}; "
              f"warm/cold p50 {w50 / c50:.2f}")
    # Back to back (no pause): with one spare per flavour each request takes the spare
    # started for it when the previous one was taken, often before it has loaded.
    conn = http.client.HTTPConnection("127.0.0.1", PORT)
    time.sleep(1)
    b2b, starts = [], {}
    for _ in range(int(os.environ.get("JS_RUNS", "60")) // 2):
        t, s = invoke_js(conn, "javascript", JS_CODE, "warm")
        b2b.append(t)
        starts[s] = starts.get(s, 0) + 1
    b50, b99 = pct(b2b)
    print(f"javascript warm back to back p50 {b50:7.2f} ms  p99 {b99:7.2f} ms  ({len(b2b)} runs: {starts})")
    time.sleep(2)
    for pid, ts in node_spares():
        print(f"idle node spare ({'typescript' if ts else 'javascript'}): RSS {status_kib(pid, 'VmRSS') / 1024:.1f} MiB, "
              f"PSS {pss_kib(pid) / 1024:.1f} MiB, RssAnon {status_kib(pid, 'RssAnon') / 1024:.1f} MiB")


PARTS = os.environ.get("PARTS", "python,node").split(",")
if "python" not in PARTS:
    node_part()
    print(f"load average during the run: {open('/proc/loadavg').read().split()[0]} on {os.cpu_count()} cores")
    sys.exit(0)

idle_before = status_kib(DAEMON, "VmRSS")
assert not zygotes(), "a zygote before the first invocation"
# Warm-up: the first invocation starts the zygote.
series("warm", 5)
warm, cold, ref, floor, starts = interleaved(RUNS)
assert starts.get("warm", 0) == len(warm) and starts.get("cold", 0) == len(cold), starts
w50, w99 = pct(warm)
f50, f99 = pct(floor)
c50, c99 = pct(cold)
r50, r99 = pct(ref)
print(f"invoke warm   p50 {w50:7.2f} ms  p99 {w99:7.2f} ms  ({len(warm)} runs, all start: warm)")
print(f"invoke cold   p50 {c50:7.2f} ms  p99 {c99:7.2f} ms  ({len(cold)} runs, all start: cold)")
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
if "node" in PARTS:
    node_part()
policy = "SCHED_FIFO" if os.sched_getscheduler(0) == os.SCHED_FIFO else "SCHED_OTHER"
print(f"load average during the run: {open('/proc/loadavg').read().split()[0]} on {os.cpu_count()} cores; "
      f"scheduling: {policy}; pause between warm invocations {THINK * 1000:.0f} ms")
