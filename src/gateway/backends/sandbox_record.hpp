#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>

#include "core/result.hpp"
#include "gateway/sandbox.hpp"

namespace execd::gateway {

/// What the process backend keeps on disk of one sandbox (`<state>/<id>/record.json`),
/// so that a gateway started later finds it: the sandbox's keeper process (pid and start
/// time, since a pid alone may be reused), its cgroup and its quota mount.
struct SandboxRecord {
  std::string sandbox_id;
  pid_t pid = 0;             ///< the keeper: parent of bwrap, in the sandbox's cgroup
  uint64_t start_time = 0;   ///< of `pid`, in clock ticks since boot (/proc/<pid>/stat field 22)
  std::string cgroup;        ///< group name under the backend's cgroup parent
  uint64_t disk_bytes = 0;   ///< tmpfs quota at the workspace; 0: a plain directory
  uint64_t memory_bytes = 0; ///< the memory limit set, for an exit message naming it
  /// Who serves the sandbox and what its row holds (Backend::create_labelled, relabel),
  /// so that any replica on this engine can rebuild the row; absent in older records.
  std::optional<InstanceLabels> labels;

  /// not_found when the file is missing; internal when it does not parse.
  static core::Result<SandboxRecord> load(const std::string& path);
  /// Written to a temporary file (unique per writer) and renamed over `path`: never seen
  /// half-written. 0600: the labels hold the sandbox's token.
  core::Result<void> save(const std::string& path) const;

  /// True while the recorded process runs: same pid, same start time, not a zombie.
  [[nodiscard]] bool is_alive() const;
};

/// Start time of `pid` in clock ticks since boot; nullopt when there is no such process
/// or it is a zombie (exited, not yet reaped).
std::optional<uint64_t> process_start_time(pid_t pid);

}  // namespace execd::gateway
