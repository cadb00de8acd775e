#include "isolation/child_steps.hpp"

#include <sys/prctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <string>

namespace execd::isolation {

int ChildSteps::apply(const char** failed_step) const noexcept {
  // "0" names the writing process itself, in cgroup v1 and v2 alike.
  for (const int fd : cgroup_procs_fds) {
    ssize_t n = 0;
    do {
      n = ::write(fd, "0", 1);
    } while (n < 0 && errno == EINTR);
    if (n != 1) {
      if (failed_step != nullptr) *failed_step = "joining the execution's cgroup";
      return n < 0 ? errno : EIO;
    }
  }
  for (const RlimitSetting& r : rlimits) {
    const rlimit lim{r.soft, r.hard};
    if (::setrlimit(r.resource, &lim) != 0) {
      if (failed_step != nullptr) *failed_step = "setting a resource limit";
      return errno;
    }
  }
  if (no_new_privs && ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    if (failed_step != nullptr) *failed_step = "setting no_new_privs";
    return errno;
  }
  return 0;
}

core::Result<void> ChildSteps::apply_to(pid_t pid) const {
  auto failed = [pid](const char* step, int err) {
    return core::make_error(core::Errc::unavailable,
                            std::string(step) + " for process " + std::to_string(pid) + ": " + std::strerror(err));
  };
  const std::string id = std::to_string(pid);
  for (const int fd : cgroup_procs_fds) {
    ssize_t n = 0;
    do {
      n = ::write(fd, id.data(), id.size());
    } while (n < 0 && errno == EINTR);
    if (n != static_cast<ssize_t>(id.size())) return failed("joining the execution's cgroup", n < 0 ? errno : EIO);
  }
  for (const RlimitSetting& r : rlimits) {
    const rlimit lim{r.soft, r.hard};
    if (::prlimit(pid, static_cast<__rlimit_resource>(r.resource), &lim, nullptr) != 0) {
      return failed("setting a resource limit", errno);
    }
  }
  if (no_new_privs) {
    // Only the process itself can set it (prctl); one started with it keeps it for life.
    std::ifstream status("/proc/" + id + "/status");
    bool has = false;
    for (std::string line; std::getline(status, line);) {
      if (line.rfind("NoNewPrivs:", 0) == 0) {
        has = line.find('1') != std::string::npos;
        break;
      }
    }
    if (!has) {
      return core::make_error(core::Errc::unavailable,
                              "process " + id + " was not started with no_new_privs, which cannot be set on it now");
    }
  }
  return {};
}

}  // namespace execd::isolation
