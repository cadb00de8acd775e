#pragma once

#include <string>

namespace execd::invoke {

/// The Python fork server, as source for `python3 -I -c`: compiled into the daemon, so
/// it never depends on the checkout or any file at run time.
///
/// It imports what a handler's bootstrap needs (and a few standard modules handlers
/// commonly use), defines `_execd_main()` (python_bootstrap_definition()), and serves
/// requests on descriptor 3, a SOCK_SEQPACKET unix socket to the daemon; it never runs
/// user code itself. Protocol, one JSON document per packet:
///
///   daemon -> zygote  {"id", "cwd", "env": ["K=V", ...], "rlimits": [[res, soft, hard]],
///                      "no_new_privs": bool}
///                     with SCM_RIGHTS: stdin, stdout, stderr, result channel, then the
///                     cgroup.procs files to join (any number)
///   zygote -> daemon  {"ready": <zygote pid>}                    once, when serving
///                     {"started": id, "pid": N}                   the child is forked
///                     {"failed": id, "message"}                   it could not be
///                     {"exited": id, "pid", "status": <wait status>, "utime_us",
///                      "stime_us", "maxrss_kb", "inblock", "oublock"}  reaped (wait4)
///                     {"log": text}                               a problem of its own
///
/// The zygote keeps one child forked ahead (a spare, as Android's zygote keeps unspecialised
/// app processes): right after fork it resets the zygote's signal handling, dies with the
/// zygote (PR_SET_PDEATHSIG), runs the bootstrap on a made-up request of our own so the
/// copy-on-write faults of that path are taken before any request, and waits on a socket
/// of its own. A request is handed to the spare (with its descriptors), or to a child
/// forked then if there is none; the zygote forks the next spare at once. The spare holds
/// nothing of any invocation until its request: the fork, the fault-in and the
/// interpreter's after-fork work leave the request's path.
///
/// With its request, a child applies the invocation's setup before anything of the
/// user's runs, in the cold path's order: its own session (setsid), cgroups joined,
/// rlimits, no_new_privs, the four descriptors as 0-3 and every other descriptor closed
/// (the control socket too), its cwd and environment; then `_execd_main()`, non-daemon
/// threads joined and atexit handlers run as an interpreter exit would, and `_exit`. The
/// zygote exits when the daemon closes the socket.
std::string zygote_program();

}  // namespace execd::invoke
