#pragma once

#include <string>

namespace execd::invoke {

/// The Python fork server, as source for `python3 -I -c`: compiled into the daemon, so
/// it never depends on the checkout or any file at run time.
///
/// It imports what a handler's bootstrap needs (and a few standard modules handlers
/// commonly use), defines `_execd_main()` (python_bootstrap_definition()), and talks to
/// the daemon over two SOCK_SEQPACKET unix sockets: descriptor 3, the control socket, and
/// descriptor 4, the work socket, which only its spare children read; it never runs user
/// code itself. One JSON document per packet:
///
///   daemon -> work    {"id", "cwd", "env": ["K=V", ...], "rlimits": [[res, soft, hard]],
///                      "no_new_privs": bool}
///                     with SCM_RIGHTS: stdin, stdout, stderr, result channel, then the
///                     cgroup.procs files to join (any number); taken by one spare
///   zygote -> daemon  {"ready": <zygote pid>}                    once, when serving
///   child  -> daemon  {"started": id, "pid": N, "utime_us", "stime_us"}  it took request
///                     id, having used that much CPU before (its warm-up: not the request's)
///   zygote -> daemon  {"exited": pid, "status": <wait status>, "utime_us", "stime_us",
///                      "maxrss_kb", "inblock", "oublock"}       it reaped it (wait4)
///                     {"log": text}                               a problem of its own
///
/// A child's "started" always precedes its "exited" on the control socket (it sends it
/// before it runs anything of the request; the zygote reaps it after it has exited).
///
/// The zygote keeps one child forked ahead (a spare, as Android's zygote keeps
/// unspecialised app processes): right after fork it resets the zygote's signal handling,
/// dies with the zygote (PR_SET_PDEATHSIG), runs the bootstrap on a made-up request of our
/// own so the copy-on-write faults of that path are taken before any request, and waits on
/// the work socket. The daemon's request goes to it directly (no hop through the zygote);
/// it tells the zygote it was taken (a byte on a pipe of its own) and the zygote forks
/// the next spare. While requests queue and no spare is ready for them, more are forked
/// (four at most); a spare skips the warm-up when a request already waits for it. Each
/// spare tells the zygote on its pipe when it is ready (waiting) and when it is taken. A
/// spare holds nothing of any invocation before its request: the fork, the fault-in and
/// the interpreter's after-fork work leave the request's path.
///
/// With its request, a child applies the invocation's setup before anything of the
/// user's runs, in the cold path's order: its own session (setsid), cgroups joined,
/// rlimits, no_new_privs, the four descriptors as 0-3 and every other descriptor closed
/// (the control and work sockets too), its cwd and environment; then `_execd_main()`,
/// non-daemon threads joined and atexit handlers run as an interpreter exit would, and
/// `_exit`. The zygote exits when the daemon closes the control socket.
std::string zygote_program();

}  // namespace execd::invoke
