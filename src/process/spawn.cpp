#include "process/spawn.hpp"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <utility>

extern char** environ;

namespace execd::process {
namespace {

struct ChildFailure {
  int stage;
  int err;
  const char* detail;  // kSetup: a static string; valid in the parent, which shares our memory
};

enum Stage { kSetsid = 1, kDup, kChdir, kGroups, kSetgid, kSetuid, kExec, kParentGone, kCloseFds, kSetup };

const char* stage_name(int stage) {
  switch (stage) {
    case kSetsid: return "setsid";
    case kDup: return "redirecting stdio";
    case kChdir: return "changing directory";
    case kGroups: return "setting supplementary groups";
    case kSetgid: return "setting the group";
    case kSetuid: return "setting the user";
    case kExec: return "exec";
    case kParentGone: return "watching the daemon (it is exiting)";
    case kCloseFds: return "closing inherited descriptors";
    case kSetup: return "isolating the child";
  }
  return "starting";
}

[[noreturn]] void child_fail(int report_fd, int stage, const char* detail = nullptr) {
  ChildFailure f{stage, errno, detail};
  ssize_t ignored = write(report_fd, &f, sizeof f);
  (void)ignored;
  _exit(127);
}

// Everything the child needs, prepared before clone: the child only makes syscalls.
struct ChildPlan {
  const SpawnOptions* options;
  char* const* argv;
  char* const* envp;
  const std::vector<std::string>* candidates;
  int stdin_fd, stdout_fd, stderr_fd, report_fd;
  const gid_t* groups;
  int n_groups;
  gid_t primary_gid;
  const sigset_t* reset_signals;  // dispositions that are not SIG_DFL in the daemon
  pid_t parent;                   // the daemon, to notice it died before PDEATHSIG was set
};

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

// Marks every descriptor from 3 up close-on-exec, whoever opened it (httplib's sockets,
// ZeroMQ's, whatever the daemon inherited): execve then leaves the child exactly its
// stdio. Marking rather than closing keeps the error-report pipe usable until execve.
// The child has its own copy of the descriptor table (no CLONE_FILES), so this does not
// touch the daemon's. Async-signal-safe: raw syscalls and a buffer on this stack only.
bool cloexec_from(unsigned first) {
  if (syscall(SYS_close_range, first, ~0U, CLOSE_RANGE_CLOEXEC) == 0) return true;
  // Before Linux 5.11: walk /proc/self/fd with getdents64 (opendir would allocate).
  const int dir = static_cast<int>(syscall(SYS_openat, AT_FDCWD, "/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir < 0) {
    // No /proc: every possible descriptor, one fcntl each.
    const long max = sysconf(_SC_OPEN_MAX);
    for (int fd = static_cast<int>(first); fd < (max > 0 ? max : 65536); ++fd) fcntl(fd, F_SETFD, FD_CLOEXEC);
    return true;
  }
  alignas(8) char buf[2048];
  for (;;) {
    const long n = syscall(SYS_getdents64, dir, buf, sizeof buf);
    if (n < 0) {
      close(dir);
      return false;
    }
    if (n == 0) break;
    for (long off = 0; off < n;) {
      // struct linux_dirent64: u64 ino, s64 off, u16 reclen, u8 type, char name[]
      unsigned short reclen = 0;
      std::memcpy(&reclen, buf + off + 16, sizeof reclen);
      const char* name = buf + off + 19;
      int fd = 0;
      bool digits = *name != '\0';
      for (const char* c = name; *c != '\0'; ++c) {
        if (*c < '0' || *c > '9') {
          digits = false;
          break;
        }
        fd = fd * 10 + (*c - '0');
      }
      if (digits && fd >= static_cast<int>(first) && fd != dir) fcntl(fd, F_SETFD, FD_CLOEXEC);
      off += reclen;
    }
  }
  close(dir);
  return true;
}

// Signals whose disposition in this process is not the default, so the child (which
// runs while the parent waits) resets only those. Read once: the daemon sets its
// dispositions at start-up, before anything is spawned.
sigset_t non_default_signals() {
  sigset_t set;
  sigemptyset(&set);
  for (int sig = 1; sig < NSIG; ++sig) {
    struct sigaction sa {};
    if (sigaction(sig, nullptr, &sa) == 0 && sa.sa_handler != SIG_DFL) sigaddset(&set, sig);
  }
  return set;
}

// The child, sharing our memory until execve: syscalls only, then execve or _exit.
int run_child(void* arg) {
  const auto& p = *static_cast<const ChildPlan*>(arg);
  const auto& o = *p.options;
  // Every disposition back to default: the daemon ignores SIGPIPE, and a daemon started
  // in the background of a shell inherited ignored SIGINT/SIGQUIT, which would make
  // interrupts no-ops for everything it runs. Then nothing stays blocked (the daemon
  // blocks SIGTERM/SIGINT for its sigwait thread).
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sigismember(p.reset_signals, sig) == 1) signal(sig, SIG_DFL);
  }
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  if (setsid() < 0) child_fail(p.report_fd, kSetsid);
  if (dup2(p.stdin_fd, STDIN_FILENO) < 0 || dup2(p.stdout_fd, STDOUT_FILENO) < 0 ||
      dup2(p.stderr_fd, STDERR_FILENO) < 0) {
    child_fail(p.report_fd, kDup);
  }
  if (!o.cwd.empty() && chdir(o.cwd.c_str()) != 0) child_fail(p.report_fd, kChdir);
  // Passed descriptors become 3, 4, ...: each is first copied above every target (a
  // source may itself be numbered like a target), then placed; dup2 clears close-on-exec.
  // The copies are made before the setup, whose RLIMIT_NOFILE may be below their numbers
  // (F_DUPFD refuses a minimum past it); placing them is fine under it.
  const auto n_pass = static_cast<int>(o.pass_fds.size());
  constexpr int kMaxPass = 16;
  int high[kMaxPass];
  if (n_pass > kMaxPass) {
    errno = EMFILE;
    child_fail(p.report_fd, kDup);
  }
  for (int i = 0; i < n_pass; ++i) {
    high[i] = fcntl(o.pass_fds[static_cast<size_t>(i)], F_DUPFD_CLOEXEC, 3 + n_pass + 64);
    if (high[i] < 0) child_fail(p.report_fd, kDup);
  }
  // Before the close-on-exec pass (the setup may use descriptors the daemon opened for
  // it, such as cgroup.procs files) and before the uid switch (joining a cgroup and
  // raising nothing needs the daemon's privileges).
  if (o.child_setup != nullptr) {
    const char* step = nullptr;
    if (const int err = o.child_setup(o.child_setup_arg, &step); err != 0) {
      errno = err;
      child_fail(p.report_fd, kSetup, step);
    }
  }
  for (int i = 0; i < n_pass; ++i) {
    if (dup2(high[i], 3 + i) < 0) child_fail(p.report_fd, kDup);
  }
  if (!cloexec_from(static_cast<unsigned>(3 + n_pass))) child_fail(p.report_fd, kCloseFds);
  if (o.uid) {
    if (setgroups(static_cast<size_t>(p.n_groups), p.groups) != 0) child_fail(p.report_fd, kGroups);
    if (setgid(p.primary_gid) != 0) child_fail(p.report_fd, kSetgid);
    if (setuid(*o.uid) != 0) child_fail(p.report_fd, kSetuid);
  } else if (o.gid) {
    if (setgid(*o.gid) != 0) child_fail(p.report_fd, kSetgid);
  }
  // Die with the daemon, even on SIGKILL. Set after the uid/gid switch, which clears
  // it. Linux sends it when the *thread* that cloned us exits: ChildReaper spawns on a
  // thread that lives as long as the daemon. If the daemon is already gone we were
  // re-parented before the signal was armed: nobody would ever stop us.
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) child_fail(p.report_fd, kParentGone);
  if (getppid() != p.parent) {
    errno = ESRCH;
    child_fail(p.report_fd, kParentGone);
  }
  int exec_errno = ENOENT;
  for (const auto& c : *p.candidates) {
    execve(c.c_str(), p.argv, p.envp);
    if (errno != ENOENT && errno != ENOTDIR) exec_errno = errno;
  }
  errno = exec_errno;
  child_fail(p.report_fd, kExec);
}

}  // namespace

std::vector<std::string> environment_with(const std::map<std::string, std::string>& overrides) {
  std::map<std::string, std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string_view kv(*e);
    const auto eq = kv.find('=');
    if (eq != std::string_view::npos) env[std::string(kv.substr(0, eq))] = std::string(kv.substr(eq + 1));
  }
  for (const auto& [k, v] : overrides) env[k] = v;
  std::vector<std::string> out;
  out.reserve(env.size());
  for (const auto& [k, v] : env) out.push_back(k + "=" + v);
  return out;
}

std::string find_in_path(const std::string& program) {
  if (program.find('/') != std::string::npos) return program;
  const char* path = std::getenv("PATH");
  const std::string dirs = path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin";
  size_t start = 0;
  while (start <= dirs.size()) {
    size_t colon = dirs.find(':', start);
    if (colon == std::string::npos) colon = dirs.size();
    const std::string candidate = (colon > start ? dirs.substr(start, colon - start) : std::string(".")) + "/" + program;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    start = colon + 1;
  }
  return program;
}

bool signal_group(pid_t pgid, int sig) { return pgid > 0 && ::kill(-pgid, sig) == 0; }

core::Result<std::pair<uid_t, gid_t>> lookup_user(const std::string& name_or_id) {
  struct passwd pw {};
  struct passwd* found = nullptr;
  char buf[4096];
  char* end = nullptr;
  const unsigned long numeric = std::strtoul(name_or_id.c_str(), &end, 10);
  if (!name_or_id.empty() && end != nullptr && *end == '\0') {
    getpwuid_r(static_cast<uid_t>(numeric), &pw, buf, sizeof buf, &found);
  } else {
    getpwnam_r(name_or_id.c_str(), &pw, buf, sizeof buf, &found);
  }
  if (found == nullptr) return core::make_error(core::Errc::invalid_argument, "no such user: " + name_or_id);
  return std::make_pair(found->pw_uid, found->pw_gid);
}

core::Result<Child> spawn(const SpawnOptions& o) {
  if (o.argv.empty()) return core::make_error(core::Errc::invalid_argument, "nothing to run");

  // Everything the child needs is prepared before clone: the child makes syscalls only.
  std::vector<char*> argv;
  for (const auto& a : o.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (const auto& e : o.env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  std::string path_env = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  for (const auto& e : o.env) {
    if (e.rfind("PATH=", 0) == 0) path_env = e.substr(5);
  }
  // Candidate executables, resolved now so the child only calls execve.
  std::vector<std::string> candidates;
  if (o.argv[0].find('/') != std::string::npos) {
    candidates.push_back(o.argv[0]);
  } else {
    size_t start = 0;
    while (start <= path_env.size()) {
      size_t colon = path_env.find(':', start);
      if (colon == std::string::npos) colon = path_env.size();
      std::string dir = path_env.substr(start, colon - start);
      if (dir.empty()) dir = ".";
      candidates.push_back(dir + "/" + o.argv[0]);
      start = colon + 1;
    }
  }

  // Identity of the child, settled before vfork (nothing may change after it).
  gid_t groups[256];
  int n_groups = 0;
  const gid_t primary_gid = [&]() -> gid_t {
    if (!o.uid) return 0;
    struct passwd pw {};
    struct passwd* found = nullptr;
    char buf[4096];
    getpwuid_r(*o.uid, &pw, buf, sizeof buf, &found);
    const gid_t gid = o.gid ? *o.gid : (found != nullptr ? found->pw_gid : *o.uid);
    n_groups = 256;
    if (found == nullptr || getgrouplist(found->pw_name, gid, groups, &n_groups) < 0) {
      groups[0] = gid;
      n_groups = 1;
    }
    return gid;
  }();

  int in_pipe[2] = {-1, -1};
  int out_pipe[2] = {-1, -1};
  int err_pipe[2] = {-1, -1};
  const bool to_file = !o.output_file.empty();
  int out_file = to_file ? ::open(o.output_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600) : -1;
  if (to_file && out_file < 0) {
    return core::make_error(core::Errc::unavailable, "cannot open " + o.output_file + ": " + std::strerror(errno));
  }
  int report[2] = {-1, -1};
  auto close_all = [&] {
    for (int fd : {in_pipe[0], in_pipe[1], out_pipe[0], out_pipe[1], err_pipe[0], err_pipe[1], report[0], report[1], out_file}) {
      if (fd >= 0) ::close(fd);
    }
  };
  if ((o.stdin_pipe && pipe2(in_pipe, O_CLOEXEC) != 0) || (!to_file && pipe2(out_pipe, O_CLOEXEC) != 0) ||
      (!to_file && !o.merge_stderr && pipe2(err_pipe, O_CLOEXEC) != 0) || pipe2(report, O_CLOEXEC) != 0) {
    const int err = errno;
    close_all();
    return core::make_error(core::Errc::unavailable, std::string("cannot create pipes: ") + std::strerror(err));
  }
  const int devnull = o.stdin_pipe ? -1 : ::open("/dev/null", O_RDONLY | O_CLOEXEC);

  // clone(CLONE_VM | CLONE_VFORK) on a stack of its own, as glibc's posix_spawn does:
  // the child borrows our memory until it execs, so starting a command costs no copy of
  // the (multi-threaded, possibly large) daemon's page tables, and nothing of the
  // parent's stack frame is touched. Every signal is blocked around it, so no handler of
  // ours can run in the child before it has reset the dispositions.
  static const sigset_t reset_signals = non_default_signals();
  const int child_out = to_file ? out_file : out_pipe[1];
  const int child_err = to_file ? out_file : o.merge_stderr ? out_pipe[1] : err_pipe[1];
  ChildPlan plan{&o,        argv.data(), envp.data(), &candidates, o.stdin_pipe ? in_pipe[0] : devnull,
                 child_out, child_err,   report[1],   groups,      n_groups, primary_gid, &reset_signals, ::getpid()};
  constexpr size_t kChildStack = 64 * 1024;
  std::unique_ptr<char[]> stack(new char[kChildStack]);
  sigset_t all_signals, saved_mask;
  sigfillset(&all_signals);
  pthread_sigmask(SIG_SETMASK, &all_signals, &saved_mask);
  const pid_t pid = clone(run_child, stack.get() + kChildStack, CLONE_VM | CLONE_VFORK | SIGCHLD, &plan);
  const int clone_errno = errno;
  pthread_sigmask(SIG_SETMASK, &saved_mask, nullptr);
  if (pid < 0) {
    close_all();
    if (devnull >= 0) ::close(devnull);
    return core::make_error(core::Errc::unavailable, std::string("clone failed: ") + std::strerror(clone_errno));
  }

  // Parent.
  if (devnull >= 0) ::close(devnull);
  ::close(report[1]);
  report[1] = -1;
  ChildFailure failure{};
  ssize_t got = 0;
  do {
    got = ::read(report[0], &failure, sizeof failure);
  } while (got < 0 && errno == EINTR);
  if (got == static_cast<ssize_t>(sizeof failure)) {
    waitpid(pid, nullptr, 0);
    close_all();
    const core::Errc code = failure.stage == kChdir || failure.stage == kExec ? core::Errc::invalid_argument
                            : failure.err == EPERM                           ? core::Errc::permission_denied
                                                                             : core::Errc::unavailable;
    std::string what = failure.stage == kSetup && failure.detail != nullptr ? failure.detail : stage_name(failure.stage);
    if (failure.stage == kChdir) what += " to " + o.cwd;
    if (failure.stage == kExec) what += " of " + o.argv[0];
    return core::make_error(code, what + " failed: " + std::strerror(failure.err));
  }

  Child child;
  child.pid = pid;
  child.pidfd.reset(static_cast<int>(syscall(SYS_pidfd_open, pid, 0)));
  // The daemon keeps its end of each pipe, non-blocking; close_all() closes the child's.
  auto keep = [](int& end) {
    core::UniqueFd fd(std::exchange(end, -1));
    fcntl(fd.get(), F_SETFL, O_NONBLOCK);
    return fd;
  };
  if (o.stdin_pipe) child.stdin_fd = keep(in_pipe[1]);
  if (!to_file) child.stdout_fd = keep(out_pipe[0]);
  if (!to_file && !o.merge_stderr) child.stderr_fd = keep(err_pipe[0]);
  close_all();
  return child;
}

}  // namespace execd::process
