#!/usr/bin/python3
"""A real WebSocket client (Debian's python3-websocket) for the PTY integration test.

Usage: pty_client.py SCENARIO BASE_URL SESSION_ID [TOKEN]
Runs one scenario against ws://.../pty/SESSION_ID/ws and prints one JSON object with what
it saw; tests/integration/pty_test.cpp asserts on it. Every wait is bounded (10 s).
"""
import base64
import http.client
import json
import os
import re
import struct
import sys
import time
import urllib.error
import urllib.request

import websocket

TIMEOUT = 10.0
OPEN = []  # every Term, closed cleanly at the end so the next scenario may attach at once


class Term:
    """One attached socket: reads frames, splits them by channel."""

    def __init__(self, base, sid, query="", token=None, subprotocols=None, header_token=True):
        url = base.replace("http://", "ws://") + "/pty/" + sid + "/ws" + query
        headers = []
        if token and header_token:
            headers.append("X-EXECD-ACCESS-TOKEN: " + token)
        self.ws = websocket.create_connection(url, timeout=TIMEOUT, header=headers, subprotocols=subprotocols)
        self.out = b""
        self.err = b""
        self.replay = []  # (offset, bytes)
        self.texts = []
        self.closed = None  # (code, reason)
        first = self.ws.recv()
        self.connected = json.loads(first)
        OPEN.append(self)

    def send_stdin(self, data):
        self.ws.send_binary(b"\x00" + data.encode())

    def send_json(self, obj):
        self.ws.send(json.dumps(obj))

    def read_one(self, deadline):
        self.ws.settimeout(max(0.05, deadline - time.time()))
        try:
            op, data = self.ws.recv_data(control_frame=True)
        except websocket.WebSocketTimeoutException:
            return False
        except websocket.WebSocketConnectionClosedException:
            if self.closed is None:
                self.closed = (1006, "")
            return False
        if op == websocket.ABNF.OPCODE_CLOSE:
            code = struct.unpack(">H", data[:2])[0] if len(data) >= 2 else 1005
            self.closed = (code, data[2:].decode(errors="replace"))
            try:
                self.ws.send_close(code if code not in (1005, 1006) else 1000)
            except Exception:
                pass
            return False
        if op == websocket.ABNF.OPCODE_TEXT:
            self.texts.append(json.loads(data))
        elif op == websocket.ABNF.OPCODE_BINARY:
            ch = data[0]
            if ch == 1:
                self.out += data[1:]
            elif ch == 2:
                self.err += data[1:]
            elif ch == 3:
                self.replay.append((struct.unpack(">Q", data[1:9])[0], data[9:]))
        return True

    def until(self, cond, timeout=TIMEOUT):
        deadline = time.time() + timeout
        while not cond():
            if time.time() > deadline or self.closed is not None:
                return cond()
            self.read_one(deadline)
        return True

    def until_closed(self, timeout=TIMEOUT):
        return self.until(lambda: self.closed is not None, timeout)

    def text_of(self, kind):
        return [t for t in self.texts if t.get("type") == kind]


def call(base, method, path, token=None):
    req = urllib.request.Request(base + path, method=method)
    if token:
        req.add_header("X-EXECD-ACCESS-TOKEN", token)
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def refused(base, sid, query="", token=None, subprotocols=None, header_token=True):
    """Status and JSON body of an upgrade request the server refuses ([101, None] if it
    accepts), sent by hand: this websocket-client keeps no refused body."""
    host = base.replace("http://", "")
    conn = http.client.HTTPConnection(host, timeout=TIMEOUT)
    headers = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode()}
    if token and header_token:
        headers["X-EXECD-ACCESS-TOKEN"] = token
    if subprotocols:
        headers["Sec-WebSocket-Protocol"] = ", ".join(subprotocols)
    conn.request("GET", "/pty/" + sid + "/ws" + query, headers=headers)
    resp = conn.getresponse()
    if resp.status == 101:
        conn.close()
        return 101, None
    body = resp.read()
    conn.close()
    try:
        return resp.status, json.loads(body)
    except ValueError:
        return resp.status, None


def foreground_is(pid, name):
    """True once the terminal's foreground group of shell `pid` leads a process `name`."""
    try:
        stat = open("/proc/%d/stat" % pid).read()
        tpgid = int(stat[stat.rindex(")") + 2:].split()[5])
        return tpgid != pid and tpgid > 0 and open("/proc/%d/comm" % tpgid).read().strip() == name
    except (OSError, ValueError, IndexError):
        return False


def main():
    scenario, base, sid = sys.argv[1], sys.argv[2], sys.argv[3]
    token = sys.argv[4] if len(sys.argv) > 4 else None
    r = {}
    if scenario == "echo":
        t = Term(base, sid, token=token)
        r["connected"] = t.connected
        t.send_stdin("echo hi-$((40+2))\n")
        r["echoed"] = t.until(lambda: b"hi-42" in t.out)
        t.send_json({"type": "ping"})
        r["pong"] = t.until(lambda: len(t.text_of("pong")) > 0)
        r["env"] = t.until(lambda: True)
        t.send_stdin("echo TERM=$TERM TTY=$(tty)\n")
        r["term"] = t.until(lambda: b"TERM=xterm-256color TTY=/dev/pts/" in t.out)
    elif scenario == "resize":
        t = Term(base, sid, token=token)
        t.send_json({"type": "resize", "cols": 123, "rows": 45})
        t.send_stdin("echo SIZE=$(tput cols)x$(tput lines)\n")
        r["tput"] = t.until(lambda: b"SIZE=123x45" in t.out)
        r["status"] = call(base, "GET", "/pty/" + sid, token)[1]
    elif scenario == "sigint":
        t = Term(base, sid, token=token)
        pid = call(base, "GET", "/pty/" + sid, token)[1]["pid"]
        t.send_stdin("sleep 100\n")
        deadline = time.time() + TIMEOUT
        while not foreground_is(pid, "sleep") and time.time() < deadline:
            time.sleep(0.01)
        r["sleeping"] = foreground_is(pid, "sleep")
        start = time.time()
        t.send_json({"type": "signal", "signal": "SIGINT"})
        t.send_stdin("echo AFTER=$?\n")
        r["interrupted"] = t.until(lambda: b"AFTER=130" in t.out)
        r["seconds"] = time.time() - start
    elif scenario == "exit":
        t = Term(base, sid, token=token)
        t.send_stdin("exit 3\n")
        t.until_closed()
        r["exit"] = t.text_of("exit")
        r["close"] = list(t.closed or ())
        r["status"] = call(base, "GET", "/pty/" + sid, token)[1]
    elif scenario == "takeover":
        a = Term(base, sid, token=token)
        a.send_stdin("X_SHARED=kept-$((6*7))\n")
        r["second"] = list(refused(base, sid, token=token))
        b = Term(base, sid, "?takeover=1", token=token)
        a.until_closed()
        r["old_close"] = list(a.closed or ())
        b.send_stdin("echo SAME=$X_SHARED\n")
        r["same_shell"] = b.until(lambda: b"SAME=kept-42" in b.out)
    elif scenario == "replay":
        a = Term(base, sid, token=token)
        a.send_stdin("echo MARK-$((7*6))\n")
        a.until(lambda: b"MARK-42" in a.out)
        a.ws.close()
        time.sleep(0.2)
        status = call(base, "GET", "/pty/" + sid, token)[1]
        r["offset"] = status["output_offset"]
        b = Term(base, sid, "?since=0", token=token)
        b.until(lambda: b"MARK-42" in b"".join(x[1] for x in b.replay), 5)
        r["connected"] = b.connected
        r["replay_offsets"] = [x[0] for x in b.replay]
        r["replay_sizes"] = [len(x[1]) for x in b.replay]
        r["replayed"] = b"MARK-42" in b"".join(x[1] for x in b.replay)
        b.ws.close()
        time.sleep(0.2)
        c = Term(base, sid, "?since=%d" % (r["offset"] - 4), token=token)
        c.until(lambda: sum(len(x[1]) for x in c.replay) >= 4, 5)
        r["tail_replay"] = [[x[0], len(x[1])] for x in c.replay]
    elif scenario == "pipe":
        t = Term(base, sid, "?pty=0", token=token)
        r["connected"] = t.connected
        t.send_stdin("echo OUT-1; echo ERR-2 >&2; [ -t 0 ] || echo NOTTY\n")
        t.until(lambda: b"ERR-2" in t.err and b"NOTTY" in t.out)
        r["out"] = t.out.decode()
        r["err"] = t.err.decode()
    elif scenario == "pipe_sandbox":
        t = Term(base, sid, "?pty=0", token=token)
        r["connected"] = t.connected
        t.send_stdin("echo PID-$$; echo ERR-2 >&2; [ -t 0 ] || echo NOTTY\n")
        t.until(lambda: b"ERR-2" in t.err and b"NOTTY" in t.out)
        r["out"] = t.out.decode()
        r["err"] = t.err.decode()
        pid = call(base, "GET", "/pty/" + sid, token)[1]["pid"]
        with open("/proc/%d/comm" % pid) as f:
            r["spawned"] = f.read().strip()
    elif scenario == "delete":
        t = Term(base, sid, token=token)
        t.send_stdin("sleep 300 & echo BG=$!=; echo DONE-$((2+3))\n")
        t.until(lambda: b"DONE-5" in t.out)
        text = t.out.decode(errors="replace")
        bg = [w for w in text.replace("\r", "").split("\n") if w.startswith("BG=") and w[3:4].isdigit()]
        r["bg"] = int(bg[-1][3:].rstrip("=")) if bg else 0
        pid = call(base, "GET", "/pty/" + sid, token)[1]["pid"]
        r["pid"] = pid
        r["memory_cgroup"] = [l.strip().split(":", 2)[2] for l in open("/proc/%d/cgroup" % pid) if ":memory:" in l]
        r["delete"] = call(base, "DELETE", "/pty/" + sid, token)[0]
        t.until_closed()
        r["exit"] = t.text_of("exit")
        r["close"] = list(t.closed or ())
        r["after"] = call(base, "GET", "/pty/" + sid, token)[0]
    elif scenario == "bad":
        t = Term(base, sid, token=token)
        t.ws.send("not json")
        t.send_json({"type": "nope"})
        t.ws.send_binary(b"\x05hello")
        t.ws.send_binary(b"")
        t.send_json({"type": "resize", "cols": 0, "rows": 10})
        t.send_json({"type": "signal", "signal": "SIGNOPE"})
        t.send_json({"type": "ping"})
        t.until(lambda: len(t.text_of("pong")) > 0)
        r["errors"] = t.text_of("error")
        r["pong"] = len(t.text_of("pong"))
        t.send_stdin("echo ALIVE-$((1+1))\n")
        r["alive"] = t.until(lambda: b"ALIVE-2" in t.out)
    elif scenario == "isolated":
        t = Term(base, sid, token=token)
        t.send_stdin("grep NoNewPrivs /proc/$$/status; cat /proc/$$/cgroup | grep -c execd; echo END-$((1+1))\n")
        t.until(lambda: b"END-2" in t.out)
        text = t.out.decode(errors="replace").replace("\r", "").replace("\x1b[?2004l", "")
        r["no_new_privs"] = [l.split()[-1] for l in text.split("\n") if l.startswith("NoNewPrivs")]
        r["cgroup_lines"] = [l for l in text.split("\n") if l.strip().isdigit()]
    elif scenario == "token":
        # The token as a subprotocol (what a browser does), never as a header.
        r["no_token"] = list(refused(base, sid, header_token=False, token=token))
        r["wrong"] = list(refused(base, sid, token=token, header_token=False, subprotocols=["execd", "execd.token.wrong"]))
        t = Term(base, sid, token=token, header_token=False, subprotocols=["execd", "execd.token." + token])
        r["subprotocol"] = t.ws.getsubprotocol()
        # What the shell can see: its descriptors (all the terminal) and its environment.
        # ls (not a command substitution, which would hold a pipe open in the shell).
        t.send_stdin("ls -l /proc/$$/fd | awk 'NF > 9 {print \"FD\", $9, $11}'; "
                     "echo LEAK=$(env | grep -c -- '" + token + "'); "
                     "echo EXECD_VARS=$(env | grep -c '^EXECD_'); echo END-$((1+2))\n")
        t.until(lambda: b"END-3" in t.out)
        # Readline's "bracketed paste off" escape may start the first output line.
        text = t.out.decode(errors="replace").replace("\r", "").replace("\x1b[?2004l", "")
        r["fds"] = [l[3:] for l in text.split("\n") if l.startswith("FD ") and l[3:4].isdigit()]
        r["leak"] = [l for l in text.split("\n") if l.startswith("LEAK=") and "$(" not in l]
        r["execd_vars"] = [l for l in text.split("\n") if l.startswith("EXECD_VARS=") and "$(" not in l]
    elif scenario == "sandbox":
        # A session at isolation level namespace (memory_limit_mb 64, max_open_files 256):
        # the terminal, job control and signals work inside bubblewrap as outside, the
        # limits hold and the sandbox sees nothing of the daemon. Every answer is printed
        # behind a marker the shell computes (NAME-7=), so the terminal's echo of the typed
        # command never matches it.
        port = base.rsplit(":", 1)[1]
        t = Term(base, sid, token=token)
        pid = call(base, "GET", "/pty/" + sid, token)[1]["pid"]  # bwrap's, on the host
        r["pid"] = pid
        r["memory_cgroup"] = [l.strip().split(":", 2)[2] for l in open("/proc/%d/cgroup" % pid) if ":memory:" in l]
        if r["memory_cgroup"]:
            with open("/sys/fs/cgroup/memory" + r["memory_cgroup"][0] + "/memory.limit_in_bytes") as f:
                r["memory_limit_bytes"] = int(f.read())

        def ask(command, name, timeout=TIMEOUT):
            start = len(t.out)
            pattern = re.compile(name + r"-7=([^\r\n]*)\r?\n")
            found = []

            def seen():
                m = pattern.search(t.out[start:].decode(errors="replace"))
                if m:
                    found.append(m.group(1))
                return bool(m)
            t.send_stdin(command + "\n")
            t.until(seen, timeout)
            return found[0] if found else None

        def wait_foreground(name):
            deadline = time.time() + TIMEOUT
            while not foreground_is(pid, name) and time.time() < deadline:
                time.sleep(0.01)
            return foreground_is(pid, name)

        r["id"] = ask("echo ID-$((3+4))=$$:$(hostname):$([ -t 0 ] && echo tty):$(tty)", "ID")
        r["home"] = ask("echo HOME-$((3+4))=$HOME:$(pwd)", "HOME")
        r["token_in_env"] = ask("echo LEAK-$((3+4))=$(env | grep -c -- '" + token + "')", "LEAK")
        r["execd_vars"] = ask("echo VARS-$((3+4))=$(env | grep -c '^EXECD_')", "VARS")
        r["no_new_privs"] = ask("echo NNP-$((3+4))=$(awk '/NoNewPrivs/ {print $2}' /proc/$$/status)", "NNP")
        # Every process the sandbox can see, by name (its own pid namespace).
        r["processes"] = ask("echo PROCS-$((3+4))=$(cat /proc/[0-9]*/comm 2>/dev/null | sort -u | tr '\\n' ' ')",
                             "PROCS")
        # The shell's descriptors: the terminal only (ls, not a command substitution,
        # which would hold a pipe open in the shell while it runs).
        start = len(t.out)
        t.send_stdin("ls -l /proc/$$/fd | awk 'NF > 9 {print \"FD\", $9, $11}'; echo FDS-$((3+4))=\n")
        t.until(lambda: b"FDS-7=" in t.out[start:])
        # Readline's "bracketed paste off" escape may start the first output line.
        text = t.out[start:].decode(errors="replace").replace("\r", "").replace("\x1b[?2004l", "")
        r["fds"] = [l[3:] for l in text.split("\n") if l.startswith("FD ") and l[3:4].isdigit()]
        r["daemon_port"] = ask("r=closed; (exec 3<>/dev/tcp/127.0.0.1/" + port + ") 2>/dev/null && r=open; "
                               "echo NET-$((3+4))=$r", "NET")
        r["usr"] = ask("r=read-only; touch /usr/execd-pty-probe 2>/dev/null && r=writable; echo USR-$((3+4))=$r", "USR")
        r["workspace"] = ask("r=read-only; touch ./probe 2>/dev/null && r=writable; echo WS-$((3+4))=$r", "WS")
        r["nofile"] = ask("echo NOFILE-$((3+4))=$(ulimit -n)", "NOFILE")
        # 256 MiB touched under a 64 MiB cgroup: the kernel kills python, the shell lives.
        r["memory_hog"] = ask("python3 -c 'b = b\"x\" * (256 << 20)'; echo MEM-$((3+4))=$?", "MEM", 30)
        # Job control: a background job brought to the foreground, then Ctrl-C as a byte.
        r["bg"] = ask("sleep 100 & echo BG-$((3+4))=$!", "BG")
        t.send_stdin("fg\n")
        r["fg_sleep"] = wait_foreground("sleep")
        t.send_stdin("\x03")
        r["ctrl_c"] = ask("echo CC-$((3+4))=$?", "CC")
        # Ctrl-Z stops the foreground job; bg resumes it; kill ends it.
        t.send_stdin("sleep 50\n")
        r["fg_sleep2"] = wait_foreground("sleep")
        start = len(t.out)
        t.send_stdin("\x1a")
        r["stopped"] = t.until(lambda: re.search(rb"Stopped\s+sleep 50", t.out[start:]) is not None)
        start = len(t.out)
        t.send_stdin("bg; jobs -r\n")
        r["resumed"] = t.until(lambda: re.search(rb"Running\s+sleep 50 &", t.out[start:]) is not None)
        r["killed_job"] = ask("kill %1; wait %1; echo KJ-$((3+4))=$?", "KJ")
        # The signal frame reaches the foreground job, never bwrap.
        t.send_stdin("sleep 100\n")
        r["fg_sleep3"] = wait_foreground("sleep")
        t.send_json({"type": "signal", "signal": "SIGINT"})
        r["signal_frame"] = ask("echo SIG-$((3+4))=$?", "SIG")
        t.send_json({"type": "resize", "cols": 123, "rows": 45})
        # stty asks the terminal on stdin itself. Twice in loaded runs (once with tput, once
        # with stty) the first read still gave 80x24 though the daemon had stored the resize:
        # asked again for up to 5 s, and how many reads it took is reported.
        deadline = time.time() + 5
        r["size_reads"] = 0
        while True:
            r["size_reads"] += 1
            r["size"] = ask("s=$(stty size); echo SIZE-$((3+4))=${s#* }x${s% *}", "SIZE")
            if r["size"] == "123x45" or time.time() > deadline:
                break
            time.sleep(0.1)
        t.send_stdin("exit 3\n")
        t.until_closed()
        r["exit"] = t.text_of("exit")
        r["close"] = list(t.closed or ())
        r["status"] = call(base, "GET", "/pty/" + sid, token)[1]
    else:
        raise SystemExit("unknown scenario " + scenario)
    for t in OPEN:
        if t.closed is None and t.ws.connected:
            t.ws.close(timeout=3)
    print(json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
