#!/usr/bin/python3
"""Code round trips (issue 4), in one run: `1+1` and 1 MiB of printed output through
execd (POST /code, SSE read to execution_complete) beside the raw kernel round trip with
jupyter_client straight to ipykernel (the floor) and Jupyter Server's REST+WebSocket
(the peer). Usage: code_latency.py EXECD_PORT [RUNS]"""
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

from jupyter_client.manager import start_new_kernel

PORT = int(sys.argv[1])
RUNS = int(sys.argv[2]) if len(sys.argv) > 2 else 500
XPY_PORT = int(sys.argv[3]) if len(sys.argv) > 3 else 0  # an execd with --kernel python=xpython
BIG = "print('x' * (1024 * 1024))"


def pct(values):
    values = sorted(values)
    return values[len(values) // 2] * 1000, values[min(len(values) - 1, len(values) * 99 // 100)] * 1000


def execd_context(port=None):
    c = http.client.HTTPConnection("127.0.0.1", port or PORT)
    t0 = time.perf_counter()
    c.request("POST", "/code/context", body=json.dumps({"language": "python"}), headers={"Content-Type": "application/json"})
    ctx = json.loads(c.getresponse().read())["id"]
    return c, ctx, time.perf_counter() - t0


def execd_run(c, ctx, code):
    body = json.dumps({"code": code, "context": {"id": ctx}})
    t0 = time.perf_counter()
    c.request("POST", "/code", body=body, headers={"Content-Type": "application/json"})
    data = c.getresponse().read()
    elapsed = time.perf_counter() - t0
    assert b"execution_complete" in data, data[-300:]
    return elapsed


def raw_run(kc, code):
    t0 = time.perf_counter()
    msg_id = kc.execute(code)
    reply = idle = False
    while not (reply and idle):
        if not reply:
            try:
                m = kc.get_shell_msg(timeout=0.001)
                reply = m["parent_header"].get("msg_id") == msg_id
            except Exception:
                pass
        while True:
            try:
                m = kc.get_iopub_msg(timeout=0.0005 if not idle else 0)
            except Exception:
                break
            if m["parent_header"].get("msg_id") == msg_id and m["msg_type"] == "status" \
                    and m["content"]["execution_state"] == "idle":
                idle = True
                break
    return time.perf_counter() - t0


def jupyter_server_runs(code, runs):
    from tornado import ioloop, websocket, httpclient
    root = tempfile.mkdtemp()
    port = 19000 + os.getpid() % 1000
    proc = subprocess.Popen([sys.executable, "-m", "jupyter_server", "--no-browser", "--allow-root",
                             "--ServerApp.token=t", f"--ServerApp.port={port}", f"--ServerApp.root_dir={root}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                c = http.client.HTTPConnection("127.0.0.1", port)
                c.request("GET", "/api?token=t")
                c.getresponse().read()
                break
            except OSError:
                time.sleep(0.05)
        c = http.client.HTTPConnection("127.0.0.1", port)
        c.request("POST", "/api/kernels?token=t", body=json.dumps({"name": "python3"}))
        kid = json.loads(c.getresponse().read())["id"]
        times = []

        async def main():
            ws = await websocket.websocket_connect(f"ws://127.0.0.1:{port}/api/kernels/{kid}/channels?token=t")
            session = uuid.uuid4().hex
            for i in range(runs + 20):
                msg_id = uuid.uuid4().hex
                msg = {"header": {"msg_id": msg_id, "session": session, "username": "b", "msg_type": "execute_request",
                                  "version": "5.3", "date": ""},
                       "parent_header": {}, "metadata": {}, "channel": "shell",
                       "content": {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                                   "allow_stdin": False, "stop_on_error": True}}
                t0 = time.perf_counter()
                await ws.write_message(json.dumps(msg))
                reply = idle = False
                while not (reply and idle):
                    m = json.loads(await ws.read_message())
                    if m.get("parent_header", {}).get("msg_id") != msg_id:
                        continue
                    if m["msg_type"] == "execute_reply":
                        reply = True
                    if m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
                        idle = True
                if i >= 20:
                    times.append(time.perf_counter() - t0)
            ws.close()

        ioloop.IOLoop.current().run_sync(main)
        return times
    finally:
        proc.terminate()
        proc.wait()


def main():
    c, ctx, cold = execd_context()
    km, kc = start_new_kernel(kernel_name="python3")
    try:
        for _ in range(30):
            execd_run(c, ctx, "1+1")
            raw_run(kc, "1+1")
        e, r = [], []
        for _ in range(RUNS):  # interleaved: the same machine load for both
            e.append(execd_run(c, ctx, "1+1"))
            r.append(raw_run(kc, "1+1"))
        big_e = [execd_run(c, ctx, BIG) for _ in range(30)]
        big_r = [raw_run(kc, BIG) for _ in range(30)]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    warms = []
    for _ in range(3):  # one creation is noisy here: the median of three
        time.sleep(3)  # the previous context asked the pool for a warm kernel
        warms.append(execd_context()[2])
    warm = sorted(warms)[1]
    js = jupyter_server_runs("1+1", min(RUNS, 200))
    (e50, e99), (r50, r99), (j50, j99) = pct(e), pct(r), pct(js)
    (b50, _), (br50, _) = pct(big_e), pct(big_r)
    print(f"{'1+1 round trip':34} {'p50 ms':>8} {'p99 ms':>8}")
    print(f"{'execd (HTTP+SSE)':34} {e50:8.2f} {e99:8.2f}")
    print(f"{'raw kernel (jupyter_client)':34} {r50:8.2f} {r99:8.2f}")
    print(f"{'Jupyter Server (REST+WebSocket)':34} {j50:8.2f} {j99:8.2f}")
    print(f"1 MiB printed: execd p50 {b50:.2f} ms, raw kernel p50 {br50:.2f} ms")
    print(f"context creation: cold (a new ipykernel) {cold * 1000:.0f} ms, from the warm pool {warm * 1000:.2f} ms")
    print("== targets")
    verdict = lambda ok: "PASS" if ok else "MISS"
    print(f"p50 within 0.5 ms of the raw kernel: {e50 - r50:+.2f} ms -> {verdict(e50 - r50 <= 0.5)}")
    print(f"p99 within 2 ms of the raw kernel's p99: {e99 - r99:+.2f} ms -> {verdict(e99 - r99 <= 2)}")
    print(f"faster than Jupyter Server: {j50 / e50:.1f}x")
    print(f"1 MiB output within 2 ms of the raw kernel: {b50 - br50:+.2f} ms -> {verdict(b50 - br50 <= 2)}")
    print(f"context creation from the warm pool < 5 ms: {warm * 1000:.2f} ms -> {verdict(warm * 1000 < 5)}")
    if XPY_PORT:
        xpython_compare()


def xpython_compare():
    """xeus-python through execd: its 1+1 and start time, and whether interrupts work."""
    c, ctx, cold = execd_context(XPY_PORT)
    for _ in range(30):
        execd_run(c, ctx, "1+1")
    x50, x99 = pct([execd_run(c, ctx, "1+1") for _ in range(min(RUNS, 300))])
    import threading
    def interrupt():
        time.sleep(0.5)
        d = http.client.HTTPConnection("127.0.0.1", XPY_PORT)
        d.request("DELETE", f"/code?id={ctx}")
        d.getresponse().read()
    threading.Thread(target=interrupt).start()
    c.request("POST", "/code", body=json.dumps({"code": "while True: pass", "context": {"id": ctx}}),
              headers={"Content-Type": "application/json"})
    body = c.getresponse().read()
    works = b"KeyboardInterrupt" in body
    print(f"xeus-python through execd: 1+1 p50 {x50:.2f} ms, p99 {x99:.2f} ms, cold start {cold * 1000:.0f} ms, "
          f"interrupt {'raises KeyboardInterrupt' if works else 'kills the kernel'}")
    print(f"python default: {'xpython would qualify' if works else 'ipykernel (xpython cannot be interrupted)'}")


if __name__ == "__main__":
    main()
