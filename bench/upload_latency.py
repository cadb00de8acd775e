"""1 MiB upload latency without curl's own cost: one prebuilt request per connection,
sent in one write, timed to the end of the response. Usage:
  upload_latency.py execd PORT TARGET_PATH   (POST /files/upload, multipart as the SDKs send it)
  upload_latency.py put PORT URL_PATH        (a plain PUT of the body: nginx, bench/discard_server.py)
Prints the p50 and p90 of 200 uploads (after 10 warm-up ones)."""
import os
import socket
import sys
import time

from discard_server import read_head


def upload(port, request):
    t0 = time.perf_counter()
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(request)
    message = read_head(s)
    if message is None:
        raise SystemExit("connection closed before the response")
    status, headers, rest = message
    length = int(headers.get(b"content-length", b"0"))
    while len(rest) < length:
        rest += s.recv(65536)
    elapsed = time.perf_counter() - t0
    s.close()
    if not status.startswith(b"HTTP/1.1 20"):
        raise SystemExit(status.decode(errors="replace"))
    return elapsed


def main():
    kind, port, target = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    data = os.urandom(1 << 20)
    if kind == "execd":
        b = b"xXxBoundaryxXx"
        body = (b"--" + b + b'\r\nContent-Disposition: form-data; name="metadata"; filename="metadata"\r\n\r\n'
                + b'{"path":"' + target.encode() + b'"}\r\n--' + b
                + b'\r\nContent-Disposition: form-data; name="file"; filename="f"\r\n\r\n' + data + b"\r\n--" + b + b"--\r\n")
        request = (b"POST /files/upload HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=" + b
                   + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    else:
        request = (b"PUT /" + target.lstrip("/").encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Length: "
                   + str(len(data)).encode() + b"\r\n\r\n" + data)
    for _ in range(10):
        upload(port, request)
    times = sorted(upload(port, request) for _ in range(200))
    print(f"{kind} p50 {times[100] * 1000:.2f} ms p90 {times[180] * 1000:.2f} ms")


if __name__ == "__main__":
    main()
