"""The floor for upload benchmarks: an HTTP/1.1 server that reads a request body and
throws it away (answering `Expect: 100-continue`), so what remains is the client's cost.
Usage: discard_server.py PORT"""
import socket
import sys


def read_head(sock):
    """An HTTP message's head from `sock`: (first line, {lowercase name: value}, body bytes
    already received); None if the peer closes first. Shared with upload_latency.py."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            return None
        buf += data
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    return lines[0], headers, rest


def serve(conn):
    message = read_head(conn)
    if message is None:
        return
    _, headers, rest = message
    if b"expect" in headers:
        conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
    length = int(headers.get(b"content-length", b"0"))
    got = len(rest)
    while got < length:
        data = conn.recv(1 << 20)
        if not data:
            return
        got += len(data)
    conn.sendall(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")


def main():
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", int(sys.argv[1])))
    s.listen(64)
    while True:
        conn, _ = s.accept()
        with conn:
            serve(conn)


if __name__ == "__main__":
    main()
