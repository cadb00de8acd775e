#pragma once

#include <sys/types.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/result.hpp"
#include "core/unique_fd.hpp"

namespace execd::process {

/// What to start. The child gets its own session and process group (setsid), so every
/// signal to the group reaches its descendants too; stdin is a pipe or /dev/null, never
/// the daemon's own.
struct SpawnOptions {
  std::vector<std::string> argv;  ///< argv[0] is looked up in PATH of `env`
  std::vector<std::string> env;   ///< the whole environment, KEY=VALUE
  std::string cwd;                ///< empty: the daemon's
  std::optional<uid_t> uid;       ///< switch user (root only); groups from the passwd db
  std::optional<gid_t> gid;       ///< primary group override
  bool stdin_pipe = false;        ///< false: /dev/null
  bool merge_stderr = false;      ///< stderr into the stdout pipe
  std::string output_file;        ///< non-empty: stdout and stderr appended to this file, no pipes
  /// Runs in the child after setsid, stdio and chdir, before inherited descriptors are
  /// marked close-on-exec, the uid switch and exec (isolation's ChildSteps: cgroup join,
  /// rlimits, no_new_privs). The child shares the daemon's memory until exec, so it must
  /// be async-signal-safe and allocation-free. Returns 0, or an errno with `*failed_step`
  /// set to a static string naming the step (reported as the spawn's error).
  int (*child_setup)(const void* arg, const char** failed_step) noexcept = nullptr;
  /// Descriptors of the daemon's (at most 16) handed to the child as 3, 4, ... in this order (the
  /// daemon keeps its own; every other descriptor stays closed at exec).
  std::vector<int> pass_fds;
  const void* child_setup_arg = nullptr;
};

/// A started child: its pid (== its process group id), a pidfd for the reactor, and the
/// parent's ends of its pipes (all CLOEXEC, non-blocking).
struct Child {
  pid_t pid = -1;
  core::UniqueFd pidfd;
  core::UniqueFd stdin_fd;   ///< valid when stdin_pipe
  core::UniqueFd stdout_fd;  ///< invalid when output_file
  core::UniqueFd stderr_fd;  ///< invalid when merge_stderr or output_file
};

/// fork + exec with the options above. Failures before exec (chdir, setuid, exec itself)
/// come back as errors naming the step, not as a child that exits 127.
core::Result<Child> spawn(const SpawnOptions& options);

/// The daemon's own environment with `overrides` on top, as KEY=VALUE for SpawnOptions.
std::vector<std::string> environment_with(const std::map<std::string, std::string>& overrides);

/// `program` (no '/') looked up in the daemon's own PATH: the executable a spawn at
/// level none would run. A long-lived server of an interpreter (the zygote, node spares)
/// gets a PATH of its own, so it is started with this; `program` itself when not found
/// or when it names a path.
std::string find_in_path(const std::string& program);

/// Sends `sig` to the child's whole process group; false if it is already gone.
bool signal_group(pid_t pgid, int sig);

/// uid and primary gid of a user name or decimal id; not_found when unknown.
core::Result<std::pair<uid_t, gid_t>> lookup_user(const std::string& name_or_id);

}  // namespace execd::process
