#include "isolation/child_steps.hpp"

#include <sys/prctl.h>
#include <unistd.h>

#include <cerrno>

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

}  // namespace execd::isolation
