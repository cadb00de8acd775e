#!/usr/bin/env python3
"""A small upstream for the port proxy tests, started through execd's own /command.

  port_proxy_upstream.py PORT
    GET  /headers   the request's headers and target as JSON
    POST /echo      the body back (streamed as read), with X-Body-Sha256 of what came in
    GET  /stream    chunked: "one\\n", a 1.5 s pause, "two\\n" (tests that the proxy does
                    not hold a chunk back)
  port_proxy_upstream.py ws-server
    a WebSocket server on a free port (prints "port N"): its first message says which
    subprotocols and token header the handshake carried, then it echoes
  port_proxy_upstream.py ws-client URL TOKEN
    connects offering the subprotocols "execd" and "execd.token.TOKEN" (a browser's way of
    sending the token), prints the server's first message, checks one echo, prints "echo ok"
"""
import hashlib
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send_json(self, doc):
        body = json.dumps(doc).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length", "0")))

    def do_GET(self):
        if self.path.startswith("/headers"):
            self.send_json({"target": self.path, "headers": {k: v for k, v in self.headers.items()}})
        elif self.path == "/stream":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i, piece in enumerate([b"one\n", b"two\n"]):
                if i:
                    time.sleep(1.5)
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_error(404)

    def do_POST(self):
        body = self.read_body()
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Body-Sha256", hashlib.sha256(body).hexdigest())
        self.end_headers()
        self.wfile.write(body)


async def ws_server():
    import asyncio
    import websockets

    async def handler(ws, path=None):
        headers = ws.request_headers
        await ws.send(json.dumps({"protocols": headers.get_all("Sec-WebSocket-Protocol"),
                                  "token_header": headers.get("X-EXECD-ACCESS-TOKEN")}))
        async for message in ws:
            await ws.send(message)

    async with websockets.serve(handler, "127.0.0.1", 0) as server:
        print(f"port {server.sockets[0].getsockname()[1]}", flush=True)
        await asyncio.Future()


async def ws_client(url, token):
    import asyncio
    import websockets

    async with websockets.connect(url, subprotocols=["execd", f"execd.token.{token}"], open_timeout=10) as ws:
        print(await asyncio.wait_for(ws.recv(), 10), flush=True)
        await ws.send("ping through the proxy")
        if await asyncio.wait_for(ws.recv(), 10) != "ping through the proxy":
            sys.exit("echo mismatch")
    print("echo ok", flush=True)


if __name__ == "__main__":
    import asyncio

    if sys.argv[1] == "ws-server":
        asyncio.run(ws_server())
    elif sys.argv[1] == "ws-client":
        asyncio.run(ws_client(sys.argv[2], sys.argv[3]))
    else:
        server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
        print(f"port {server.server_address[1]}", flush=True)
        server.serve_forever()
