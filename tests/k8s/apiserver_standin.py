#!/usr/bin/env python3
"""A STAND-IN for a Kubernetes API server, for tests only. It is not Kubernetes.

No API server can run on the machines this project is built on, so the Kubernetes
backend's request/response cycle is tested against this: a small HTTPS server that
speaks the paths and shapes of the API reference for what the backend uses (pods:
create, get, list with a label selector, watch with a field selector and
resourceVersion, merge-patch of metadata, delete; secrets: create, get, merge-patch,
delete; nodes: list; pods across namespaces; metrics.k8s.io node metrics when --metrics
is given), checks a bearer
token, and validates every object it receives against Kubernetes' own schemas
(tests/k8s/validate_objects.mjs, kubernetes-models): an object that fails is refused
with 422 and recorded, so a test can assert that none was.

It also plays the kubelet, crudely: a created pod is bound to a node, its token is
read from the Secret it references, and a real execd is started on a loopback address
of its own (the "pod IP", port 44772) with that token; the pod turns Ready when execd
accepts connections (the readiness probe), Failed when execd exits. The sandbox's own
entrypoint is not run, and the bundle init container is not run either (execd comes
from --execd). An image named "missing:image" stays Pending with ErrImagePull.

GET /standin/stats answers what it validated and refused.
"""
import argparse
import base64
import copy
import json
import os
import random
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlparse

ARGS = None
LOCK = threading.Condition()
RV = [100]
PODS = {}      # (ns, name) -> pod
SECRETS = {}   # (ns, name) -> secret
EVENTS = []    # (rv, ns, type, pod) for watches
PROCS = {}     # (ns, name) -> Popen
STATS = {"validated": 0, "invalid": [], "requests": 0}
VALIDATOR = None
VALIDATOR_LOCK = threading.Lock()
NEXT_IP = [0]
IP_BASE = "127.%d" % random.randint(64, 126)
NODES = ["standin-node-a", "standin-node-b"]


def now():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def next_rv():
    RV[0] += 1
    return str(RV[0])


def validate(obj):
    """The schema check: one line to the node validator, one line back."""
    with VALIDATOR_LOCK:
        VALIDATOR.stdin.write(json.dumps(obj) + "\n")
        VALIDATOR.stdin.flush()
        result = json.loads(VALIDATOR.stdout.readline())
    STATS["validated"] += 1
    if not result["ok"]:
        STATS["invalid"].append(result)
    return result


def status(code, reason, message):
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


def label_match(obj, selector):
    if not selector:
        return True
    labels = obj.get("metadata", {}).get("labels", {}) or {}
    for term in selector.split(","):
        if "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k) == v:
                return False
        elif "=" in term:
            k, v = term.split("=", 1)
            if labels.get(k.rstrip("=")) != v:
                return False
        elif term and term not in labels:
            return False
    return True


def field_match(obj, selector):
    if not selector:
        return True
    for term in selector.split(","):
        neg = "!=" in term
        k, v = term.split("!=" if neg else "=", 1)
        v = v.lstrip("=")
        cur = obj
        for part in k.split("."):
            cur = cur.get(part, {}) if isinstance(cur, dict) else {}
        cur = cur if isinstance(cur, str) else ""
        if (cur == v) == neg:
            return False
    return True


def emit(ns, kind, pod):
    """Records a change of a pod (under LOCK) and wakes the watches."""
    pod["metadata"]["resourceVersion"] = next_rv()
    EVENTS.append((int(pod["metadata"]["resourceVersion"]), ns, kind, copy.deepcopy(pod)))
    LOCK.notify_all()


def set_condition(pod, ctype, value, reason="", message=""):
    conds = [c for c in pod["status"].get("conditions", []) if c["type"] != ctype]
    conds.append({"type": ctype, "status": value, "lastTransitionTime": now(), "reason": reason, "message": message})
    pod["status"]["conditions"] = conds


def container_status(pod, state, ready=False):
    c = pod["spec"]["containers"][0]
    pod["status"]["containerStatuses"] = [{"name": c["name"], "image": c["image"], "imageID": "", "ready": ready,
                                           "restartCount": 0, "started": "running" in state, "state": state}]


def kubelet(ns, name):
    """Plays the node agent for one pod; every change goes through LOCK and emit()."""
    time.sleep(0.1)
    with LOCK:
        pod = PODS.get((ns, name))
        if pod is None:
            return
        pod["spec"]["nodeName"] = NODES[hash(name) % len(NODES)]
        set_condition(pod, "PodScheduled", "True")
        emit(ns, "MODIFIED", pod)
        image = pod["spec"]["containers"][0]["image"]
    if image == "missing:image":
        with LOCK:
            container_status(pod, {"waiting": {"reason": "ErrImagePull", "message": "image missing:image not found"}})
            emit(ns, "MODIFIED", pod)
        return
    token = None
    deadline = time.time() + 10
    while token is None and time.time() < deadline:
        with LOCK:
            if (ns, name) not in PODS:
                return
            env = pod["spec"]["containers"][0].get("env", [])
            for e in env:
                ref = (e.get("valueFrom") or {}).get("secretKeyRef")
                if e["name"] == "EXECD_SANDBOX_TOKEN" and ref:
                    secret = SECRETS.get((ns, ref["name"]))
                    if secret is not None:
                        token = base64.b64decode(secret["data"][ref["key"]]).decode()
        if token is None:
            time.sleep(0.1)
    with LOCK:
        if token is None:
            container_status(pod, {"waiting": {"reason": "CreateContainerConfigError", "message": "secret not found"}})
            emit(ns, "MODIFIED", pod)
            return
        NEXT_IP[0] += 1
        ip = "%s.%d.%d" % (IP_BASE, NEXT_IP[0] // 250, NEXT_IP[0] % 250 + 2)
        port = pod["spec"]["containers"][0]["ports"][0]["containerPort"]
        child_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "EXECD_ACCESS_TOKEN": token,
                     "TMPDIR": os.environ.get("TMPDIR", "/tmp")}
        proc = subprocess.Popen([ARGS.execd, "--host", ip, "--port", str(port)], env=child_env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        PROCS[(ns, name)] = proc
        pod["status"].update({"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": "10.0.0.1",
                              "startTime": now()})
        container_status(pod, {"running": {"startedAt": now()}})
        set_condition(pod, "Initialized", "True")
        set_condition(pod, "ContainersReady", "False")
        set_condition(pod, "Ready", "False")
        emit(ns, "MODIFIED", pod)
    # The readiness probe: a TCP connect every 100 ms until it succeeds.
    ready = False
    while proc.poll() is None:
        if not ready:
            try:
                socket.create_connection((ip, port), timeout=0.5).close()
                ready = True
                with LOCK:
                    if (ns, name) in PODS and not pod["metadata"].get("deletionTimestamp"):
                        container_status(pod, {"running": {"startedAt": now()}}, ready=True)
                        set_condition(pod, "ContainersReady", "True")
                        set_condition(pod, "Ready", "True")
                        emit(ns, "MODIFIED", pod)
            except OSError:
                pass
        time.sleep(0.1)
    with LOCK:
        if (ns, name) in PODS and not pod["metadata"].get("deletionTimestamp"):
            code = proc.returncode
            code = 128 - code if code < 0 else code
            container_status(pod, {"terminated": {"exitCode": code, "reason": "Error" if code else "Completed",
                                                  "startedAt": now(), "finishedAt": now()}})
            pod["status"]["phase"] = "Failed" if code else "Succeeded"
            set_condition(pod, "Ready", "False")
            emit(ns, "MODIFIED", pod)


def stop_pod(ns, name):
    proc = PROCS.pop((ns, name), None)
    if proc is not None and proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    with LOCK:
        pod = PODS.pop((ns, name), None)
        if pod is not None:
            emit(ns, "DELETED", pod)
            # The garbage collector: Secrets owned by this pod go with it.
            for key, s in list(SECRETS.items()):
                owners = s["metadata"].get("ownerReferences") or []
                if any(o.get("uid") == pod["metadata"]["uid"] for o in owners):
                    del SECRETS[key]


def merge_patch(target, patch):
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def send_json(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        return json.loads(raw) if raw else None

    def authorized(self):
        if self.headers.get("Authorization") == "Bearer " + ARGS.token:
            return True
        self.send_json(401, status(401, "Unauthorized", "Unauthorized"))
        return False

    def route(self):
        u = urlparse(self.path)
        return [unquote(p) for p in u.path.strip("/").split("/")], {k: v[0] for k, v in parse_qs(u.query).items()}

    def do_GET(self):
        STATS["requests"] += 1
        parts, q = self.route()
        if parts == ["standin", "stats"]:
            return self.send_json(200, STATS)
        if not self.authorized():
            return
        if parts == ["api", "v1", "nodes"]:
            items = [{"apiVersion": "v1", "kind": "Node", "metadata": {"name": n},
                      "spec": {}, "status": {"allocatable": {"cpu": ARGS.node_cpu, "memory": ARGS.node_memory, "pods": "110"},
                                             "conditions": [{"type": "Ready", "status": "True"}]}} for n in NODES]
            return self.send_json(200, {"kind": "NodeList", "apiVersion": "v1", "metadata": {"resourceVersion": str(RV[0])}, "items": items})
        if parts == ["api", "v1", "pods"]:
            with LOCK:
                items = [copy.deepcopy(p) for p in PODS.values() if field_match(p, q.get("fieldSelector"))]
            return self.send_json(200, {"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": str(RV[0])}, "items": items})
        if parts == ["apis", "metrics.k8s.io", "v1beta1", "nodes"]:
            if not ARGS.metrics:
                return self.send_json(404, status(404, "NotFound", "the server could not find the requested resource"))
            items = [{"metadata": {"name": n}, "timestamp": now(), "window": "10s",
                      "usage": {"cpu": ARGS.metrics_cpu, "memory": ARGS.metrics_memory}} for n in NODES]
            return self.send_json(200, {"kind": "NodeMetricsList", "apiVersion": "metrics.k8s.io/v1beta1", "items": items})
        if len(parts) >= 5 and parts[:3] == ["api", "v1", "namespaces"]:
            ns, kind = parts[3], parts[4]
            name = parts[5] if len(parts) > 5 else None
            store = PODS if kind == "pods" else SECRETS if kind == "secrets" else None
            if store is None:
                return self.send_json(404, status(404, "NotFound", "no such resource " + kind))
            if name:
                with LOCK:
                    obj = copy.deepcopy(store.get((ns, name)))
                if obj is None:
                    return self.send_json(404, status(404, "NotFound", '%s "%s" not found' % (kind, name)))
                return self.send_json(200, obj)
            if q.get("watch") in ("1", "true"):
                return self.watch(ns, q)
            with LOCK:
                items = [copy.deepcopy(o) for (n, _), o in store.items()
                         if n == ns and label_match(o, q.get("labelSelector")) and field_match(o, q.get("fieldSelector"))]
            lim = int(q.get("limit", 0) or 0)
            if lim:
                items = items[:lim]
            return self.send_json(200, {"kind": "PodList" if kind == "pods" else "SecretList", "apiVersion": "v1",
                                        "metadata": {"resourceVersion": str(RV[0])}, "items": items})
        self.send_json(404, status(404, "NotFound", "the server could not find the requested resource"))

    def watch(self, ns, q):
        since = int(q.get("resourceVersion") or RV[0])
        end = time.time() + int(q.get("timeoutSeconds", 30))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        sent = since
        try:
            while time.time() < end:
                with LOCK:
                    LOCK.wait_for(lambda: any(rv > sent for rv, *_ in EVENTS[-200:]), timeout=max(0.0, min(1.0, end - time.time())))
                    batch = [(rv, kind, pod) for rv, n, kind, pod in EVENTS if rv > sent and n == ns
                             and label_match(pod, q.get("labelSelector")) and field_match(pod, q.get("fieldSelector"))]
                    sent = max([sent] + [rv for rv, *_ in EVENTS])
                for rv, kind, pod in batch:
                    line = (json.dumps({"type": kind, "object": pod}) + "\n").encode()
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                    self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass
        self.close_connection = True

    def do_POST(self):
        STATS["requests"] += 1
        if not self.authorized():
            return
        parts, _ = self.route()
        if len(parts) != 5 or parts[:3] != ["api", "v1", "namespaces"] or parts[4] not in ("pods", "secrets"):
            return self.send_json(404, status(404, "NotFound", "no such collection"))
        ns, kind = parts[3], parts[4]
        obj = self.body()
        result = validate(obj)
        if not result["ok"]:
            return self.send_json(422, status(422, "Invalid", "; ".join(result["errors"])[:2000]))
        name = obj["metadata"]["name"]
        store = PODS if kind == "pods" else SECRETS
        with LOCK:
            if (ns, name) in store:
                return self.send_json(409, status(409, "AlreadyExists", '%s "%s" already exists' % (kind, name)))
            meta = obj["metadata"]
            meta.update({"namespace": ns, "uid": str(uuid.uuid4()), "creationTimestamp": now()})
            if kind == "secrets":
                data = dict(obj.get("data") or {})
                for k, v in (obj.pop("stringData", None) or {}).items():
                    data[k] = base64.b64encode(v.encode()).decode()
                obj["data"] = data
                meta["resourceVersion"] = next_rv()
                SECRETS[(ns, name)] = obj
            else:
                obj["status"] = {"phase": "Pending", "qosClass": "Burstable"}
                PODS[(ns, name)] = obj
                emit(ns, "ADDED", obj)
                threading.Thread(target=kubelet, args=(ns, name), daemon=True).start()
            out = copy.deepcopy(obj)
        self.send_json(201, out)

    def do_PATCH(self):
        STATS["requests"] += 1
        if not self.authorized():
            return
        parts, _ = self.route()
        if len(parts) != 6 or parts[4] not in ("secrets", "pods"):
            return self.send_json(404, status(404, "NotFound", "no such resource"))
        if self.headers.get("Content-Type") != "application/merge-patch+json":
            return self.send_json(415, status(415, "UnsupportedMediaType", "only merge-patch here"))
        patch = self.body()
        ns, kind, name = parts[3], parts[4], parts[5]
        store = SECRETS if kind == "secrets" else PODS
        with LOCK:
            cur = store.get((ns, name))
            if cur is None:
                return self.send_json(404, status(404, "NotFound", '%s "%s" not found' % (kind, name)))
            merged = merge_patch(copy.deepcopy(cur), patch)
        result = validate(merged)
        if not result["ok"]:
            return self.send_json(422, status(422, "Invalid", "; ".join(result["errors"])[:2000]))
        with LOCK:
            if kind == "pods":
                # Only metadata may change here (the API also allows a few spec fields).
                if merged.get("spec") != cur.get("spec"):
                    return self.send_json(422, status(422, "Invalid", "pod updates may not change spec here"))
                cur["metadata"] = merged["metadata"]
                emit(ns, "MODIFIED", cur)
                merged = copy.deepcopy(cur)
            else:
                merged["metadata"]["resourceVersion"] = next_rv()
                SECRETS[(ns, name)] = merged
        self.send_json(200, merged)

    def do_DELETE(self):
        STATS["requests"] += 1
        if not self.authorized():
            return
        parts, _ = self.route()
        self.body()  # DeleteOptions
        if len(parts) != 6 or parts[4] not in ("pods", "secrets"):
            return self.send_json(404, status(404, "NotFound", "no such resource"))
        ns, kind, name = parts[3], parts[4], parts[5]
        if kind == "secrets":
            with LOCK:
                gone = SECRETS.pop((ns, name), None)
            if gone is None:
                return self.send_json(404, status(404, "NotFound", 'secrets "%s" not found' % name))
            return self.send_json(200, status(200, "", "deleted") | {"status": "Success"})
        with LOCK:
            pod = PODS.get((ns, name))
            if pod is None:
                return self.send_json(404, status(404, "NotFound", 'pods "%s" not found' % name))
            pod["metadata"]["deletionTimestamp"] = now()
            emit(ns, "MODIFIED", pod)
            out = copy.deepcopy(pod)
        threading.Thread(target=stop_pod, args=(ns, name), daemon=True).start()
        self.send_json(200, out)


def main():
    global ARGS, VALIDATOR
    p = argparse.ArgumentParser()
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--port-file", required=True)
    p.add_argument("--execd", required=True)
    p.add_argument("--validator", required=True, help="tests/k8s/validate_objects.mjs")
    p.add_argument("--models", required=True, help="the directory make k8s-schema installs into")
    p.add_argument("--node-cpu", default="4")
    p.add_argument("--node-memory", default="8Gi")
    p.add_argument("--metrics", action="store_true")
    p.add_argument("--metrics-cpu", default="500000000n")
    p.add_argument("--metrics-memory", default="1048576Ki")
    ARGS = p.parse_args()
    VALIDATOR = subprocess.Popen(["node", ARGS.validator, ARGS.models, "--lines"], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True)
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(ARGS.cert, ARGS.key)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)

    def stop(*_):
        for key in list(PROCS):
            proc = PROCS.pop(key)
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        VALIDATOR.kill()
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    with open(ARGS.port_file + ".tmp", "w") as f:
        f.write(str(srv.server_address[1]))
    os.rename(ARGS.port_file + ".tmp", ARGS.port_file)
    srv.serve_forever()


if __name__ == "__main__":
    main()
