#include "invoke/zygote_program.hpp"

#include "invoke/handler_bootstrap.hpp"

namespace execd::invoke {

namespace {

// Imported once here, so a forked child finds them loaded: the bootstrap's own modules
// and a few standard modules handlers commonly use. Each costs the zygote's RSS once,
// shared copy-on-write by children. Not threading, asyncio (which imports it) or random:
// their at-fork hooks (threading's state rebuilt, random reseeded) cost every child about
// 10 ms of CPU here, even one that never uses them; a handler that imports them pays
// then, and only then.
constexpr const char* kHead = R"PY(
import sys, os, gc, json, traceback, inspect, socket, signal, select, resource, ctypes, atexit
import re, datetime, collections, base64, hashlib, math, time, typing, functools, itertools
)PY";

constexpr const char* kServer = R"PY(
_execd_libc = ctypes.CDLL(None, use_errno=True)
_execd_prctl = _execd_libc.prctl
_PR_SET_PDEATHSIG = 1
_PR_SET_NO_NEW_PRIVS = 38
# Spares that die before any request are replaced at most this often.
_EXECD_SPARE_RETRY_S = 1.0

def _execd_warm():
    # The bootstrap's own path on a made-up request (our code, not the user's): the
    # copy-on-write faults it takes in this fresh child are taken now, not while a request
    # waits.
    _execd_run({"code": "def handler(event):\n    return [event, None, 1.5, True]\n",
                "event": {"s": "x", "n": 1, "l": []}}, len)
    with open(os.devnull, "w", encoding="utf-8") as sink:
        sink.write(json.dumps({"id": 1, "cwd": "/", "env": ["K=v"], "rlimits": [], "no_new_privs": False}))
        sink.flush()
    json.loads('{"id": 1, "cwd": "/", "env": ["K=v"], "rlimits": [[7, 64, 64]], "no_new_privs": false}')
    os.environ["EXECD_WARM"] = "1"
    del os.environ["EXECD_WARM"]

def _execd_spare(ctl, work, taken, zygote):
    # A child forked before its request: what does not depend on the request is done
    # first (nothing of any invocation is here yet); then it takes one request off the
    # work socket, straight from the daemon, tells the zygote (a byte on `taken`: fork the
    # next spare) and the daemon (its pid), and runs it.
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        if _execd_prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0 or os.getppid() != zygote:
            os._exit(127)
        if not select.select([work], [], [], 0)[0]:  # nothing waits for it yet
            _execd_warm()
        os.write(taken, b"r")  # ready: waiting for a request
        message, fds, _, _ = socket.recv_fds(work, 1 << 16, 32)
        if not message:
            os._exit(0)  # the daemon closed the work socket
        os.write(taken, b"t")
        os.close(taken)
        request = json.loads(message)
        used = resource.getrusage(resource.RUSAGE_SELF)
        ctl.send(json.dumps({"started": request["id"], "pid": os.getpid(), "utime_us": int(used.ru_utime * 1e6),
                             "stime_us": int(used.ru_stime * 1e6)}).encode())
        # Their descriptors are closed or replaced in _execd_child: the objects must not
        # close them again later (by then the numbers may be the handler's own files).
        ctl.detach()
        work.detach()
    except BaseException:
        os._exit(127)
    _execd_child(request, fds)

def _execd_child(request, fds):
    try:
        os.setsid()
        for fd in fds[4:]:
            os.write(fd, b"0")
        for which, soft, hard in request["rlimits"]:
            resource.setrlimit(which, (soft, hard))
        if request["no_new_privs"] and _execd_prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
        for target, fd in enumerate(fds[:4]):
            os.dup2(fd, target)
        os.closerange(4, 2147483647)
        os.chdir(request["cwd"])
        os.environ.clear()
        for kv in request["env"]:
            key, _, value = kv.partition("=")
            if key:
                os.environ[key] = value
        sys.argv = ["-c"]
    except BaseException as e:
        try:
            os.write(2, ("execd: the warm start could not set up this invocation: %r\n" % (e,)).encode())
        except BaseException:
            pass
        os._exit(127)
    code = 0
    try:
        _execd_main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:
        traceback.print_exc()
        code = 1
    try:
        # As an interpreter exit does: non-daemon threads joined (if any were started).
        threading = sys.modules.get("threading")
        if threading is not None:
            threading._shutdown()
        atexit._run_exitfuncs()
    except BaseException:
        traceback.print_exc()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass
    os._exit(code)

def _execd_zygote():
    ctl = socket.socket(fileno=3)
    work = socket.socket(fileno=4)  # requests, read by spares only
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    zygote = os.getpid()
    spares = {}        # taken pipe's read end -> [pid, ready] of a spare not yet taken
    spare_after = 0.0  # no new spare before this (monotonic): the last one died idle
    def send(doc):
        ctl.send(json.dumps(doc).encode())
    def fork_spare():
        taken_r, taken_w = os.pipe2(os.O_CLOEXEC)
        try:
            pid = os.fork()
        except OSError:
            os.close(taken_r)
            os.close(taken_w)
            raise
        if pid == 0:
            try:
                os.close(taken_r)
                _execd_spare(ctl, work, taken_w, zygote)
            finally:
                os._exit(127)
        os.close(taken_w)
        spares[taken_r] = [pid, False]
    def queued():
        return bool(select.select([work], [], [], 0)[0])
    def reap():
        while True:
            try:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            # Keyed by pid: the child itself told the daemon which request it took.
            send({"exited": pid, "status": status,
                  "utime_us": int(usage.ru_utime * 1e6), "stime_us": int(usage.ru_stime * 1e6),
                  "maxrss_kb": usage.ru_maxrss, "inblock": usage.ru_inblock, "oublock": usage.ru_oublock})
    # Everything loaded so far is moved out of the collector's reach: a child's collections
    # then never write to these objects' headers, so their pages stay shared, not copied.
    gc.collect()
    gc.freeze()
    send({"ready": zygote})
    while True:
        wait = None
        # One spare waits; while requests queue and no spare is ready to take them, more
        # (four at most) to drain them. A spare warms up only when no request waits.
        while time.monotonic() >= spare_after:
            if spares and (len(spares) >= 4 or not queued() or any(ready for _, ready in spares.values())):
                break
            try:
                fork_spare()
            except OSError as e:
                spare_after = time.monotonic() + _EXECD_SPARE_RETRY_S
                send({"log": "cannot fork a spare child: %s" % e.strerror})
        if not spares:
            wait = max(0.0, spare_after - time.monotonic())
        readable = select.select([ctl, wake_r] + list(spares), [], [], wait)[0]
        for fd in readable:
            if fd in spares:
                got = b""
                try:
                    got = os.read(fd, 2)
                except OSError:
                    pass
                if got == b"r":
                    spares[fd][1] = True
                    continue
                os.close(fd)
                del spares[fd]
                if b"t" not in got:
                    spare_after = time.monotonic() + _EXECD_SPARE_RETRY_S  # it died idle
        if wake_r in readable:
            try:
                while os.read(wake_r, 512):
                    pass
            except BlockingIOError:
                pass
            reap()
        if ctl in readable and not ctl.recv(1 << 16):
            return  # the daemon closed the socket

try:
    _execd_zygote()
except BaseException:
    try:
        socket.socket(fileno=3).send(json.dumps({"log": traceback.format_exc()}).encode())
    except BaseException:
        pass
)PY";

}  // namespace

std::string zygote_program() {
  std::string program = kHead;
  program += python_bootstrap_definition();
  program += kServer;
  return program;
}

}  // namespace execd::invoke
