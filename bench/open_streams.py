#!/usr/bin/env python3
"""Opens N concurrent GET <path> streams to 127.0.0.1:PORT, waits until every one has
received its first SSE event, prints the seconds that took, then holds them open until
stdin closes (so the caller can measure the daemon meanwhile)."""
import selectors
import socket
import sys
import time

port, n, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
sel = selectors.DefaultSelector()
request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
socks = []
start = time.monotonic()
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(request)
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ, {"got": False})
    socks.append(s)
pending = n
deadline = time.monotonic() + 30
while pending and time.monotonic() < deadline:
    for key, _ in sel.select(timeout=1):
        data = key.fileobj.recv(65536)
        if b"data: {" in data and not key.data["got"]:
            key.data["got"] = True
            pending -= 1
print(f"{n - pending} {time.monotonic() - start:.2f}", flush=True)
sys.stdin.read()
for s in socks:
    s.close()
