"""The floor for upload benchmarks: an HTTP/1.1 server that reads a request body and
throws it away (answering `Expect: 100-continue`), so what remains is the client's cost.
Usage: discard_server.py PORT"""
import socket
import sys


def serve(conn):
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = conn.recv(65536)
        if not data:
            return
        buf += data
    head, _, rest = buf.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
        if name.strip().lower() == b"expect":
            conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
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
