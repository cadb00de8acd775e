#!/usr/bin/python3
"""Keystroke echo round trip through execd's PTY WebSocket, beside a bare PTY loop.

Usage: pty_echo.py PORT [KEYS]
Both loops are Python in this one process, interleaved in blocks of 100 keys, so the
interpreter's cost and the machine's load fall on both alike:
  websocket: send 0x00 + "a" on /pty/<id>/ws, wait for the "a" readline echoes on 0x01;
  bare:      openpty + bash -i (pty.fork), write "a" to the master, read the echo.
After each block both lines are cleared (Ctrl-U), untimed. Prints p50/p99 in ms and the
ratio websocket/bare.
"""
import json
import os
import pty
import select
import sys
import time
import urllib.request

import websocket

PORT = int(sys.argv[1])
KEYS = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
BLOCK = 100
BASE = "http://127.0.0.1:%d" % PORT


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(len(v) * p / 100))]


class Ws:
    def __init__(self):
        req = urllib.request.Request(BASE + "/pty", data=b"{}", method="POST")
        sid = json.loads(urllib.request.urlopen(req, timeout=10).read())["session_id"]
        self.ws = websocket.create_connection(BASE.replace("http", "ws") + "/pty/" + sid + "/ws", timeout=10)
        self.ws.sock.setsockopt(6, 1, 1)  # TCP_NODELAY, as a terminal client would
        self.ws.recv()  # connected
        self.drain(1.0)

    def key(self, k):
        self.ws.send_binary(b"\x00" + k)

    def read_until(self, want, timeout=5.0):
        got = b""
        deadline = time.time() + timeout
        while want not in got:
            self.ws.settimeout(max(0.01, deadline - time.time()))
            data = self.ws.recv()
            if isinstance(data, bytes) and data[:1] == b"\x01":
                got += data[1:]
            if time.time() > deadline:
                raise SystemExit("websocket: no echo within %.0f s" % timeout)
        return got

    def drain(self, quiet=0.05):
        self.ws.settimeout(quiet)
        try:
            while True:
                self.ws.recv()
        except websocket.WebSocketTimeoutException:
            pass


class Bare:
    def __init__(self):
        pid, fd = pty.fork()
        if pid == 0:
            os.execvpe("bash", ["bash", "--noprofile", "--norc", "-i"],
                       {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TERM": "xterm-256color"})
        self.pid, self.fd = pid, fd
        self.drain(1.0)

    def key(self, k):
        os.write(self.fd, k)

    def read_until(self, want, timeout=5.0):
        got = b""
        deadline = time.time() + timeout
        while want not in got:
            r, _, _ = select.select([self.fd], [], [], max(0.01, deadline - time.time()))
            if r:
                got += os.read(self.fd, 65536)
            if time.time() > deadline:
                raise SystemExit("bare pty: no echo within %.0f s" % timeout)
        return got

    def drain(self, quiet=0.05):
        while select.select([self.fd], [], [], quiet)[0]:
            if not os.read(self.fd, 65536):
                break


def block(term, times):
    for _ in range(BLOCK):
        t0 = time.perf_counter()
        term.key(b"a")
        term.read_until(b"a")
        times.append((time.perf_counter() - t0) * 1000)
    term.key(b"\x15")  # Ctrl-U: an empty line again
    term.drain()


def main():
    ws, bare = Ws(), Bare()
    t_ws, t_bare = [], []
    for _ in range(max(1, KEYS // BLOCK)):
        block(ws, t_ws)
        block(bare, t_bare)
    w50, w99, b50, b99 = pct(t_ws, 50), pct(t_ws, 99), pct(t_bare, 50), pct(t_bare, 99)
    print("keystroke echo, %d keys each (ms)   p50     p99" % len(t_ws))
    print("  execd PTY WebSocket           %7.3f %7.3f" % (w50, w99))
    print("  bare openpty + bash (floor)   %7.3f %7.3f" % (b50, b99))
    print("  ratio websocket/bare          %7.2f %7.2f" % (w50 / b50, w99 / b99))
    os.kill(bare.pid, 9)
    os.waitpid(bare.pid, 0)


if __name__ == "__main__":
    main()
