#!/usr/bin/env python3
"""A real WebSocket peer for the proxy tests (Debian's python3-websockets).

  ws_echo.py server          echo server on 127.0.0.1, prints "port N", runs until killed
  ws_echo.py client URL      connects, sends text and binary messages (one of 1 MiB),
                             checks each echo, prints "ok N" (N messages) or fails (exit 1)
Extra headers for the client: WS_HEADERS="Name: value|Name2: value2".
"""
import asyncio
import os
import sys

import websockets


async def serve():
    async def echo(ws, path=None):
        async for message in ws:
            await ws.send(message)

    async with websockets.serve(echo, "127.0.0.1", 0, max_size=8 << 20) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"port {port}", flush=True)
        await asyncio.Future()


async def client(url):
    headers = []
    for item in filter(None, os.environ.get("WS_HEADERS", "").split("|")):
        name, _, value = item.partition(":")
        headers.append((name.strip(), value.strip()))
    messages = ["hello", "second message", b"\x00\x01\x02binary", os.urandom(1 << 20), "last"]
    async with websockets.connect(url, extra_headers=headers, max_size=8 << 20, open_timeout=10) as ws:
        for m in messages:
            await ws.send(m)
            got = await asyncio.wait_for(ws.recv(), timeout=10)
            if got != m:
                print(f"mismatch: sent {len(m)} got {len(got)}", flush=True)
                sys.exit(1)
    print(f"ok {len(messages)}", flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "server":
        asyncio.run(serve())
    else:
        asyncio.run(client(sys.argv[2]))
