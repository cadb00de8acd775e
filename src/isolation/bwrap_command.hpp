#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/result.hpp"

namespace execd::isolation {

/// The host's system directories as the sandbox should see them, read once: which of
/// /usr, /bin, /lib, ... are directories (bound read-only) or symlinks (recreated as the
/// same symlink, as merged-/usr systems need), and which secrets under /etc exist and are
/// masked (root in a user namespace is still the owner of root's 0600 files).
struct SystemLayout {
  std::vector<std::string> ro_dirs;                              ///< bound read-only at the same path
  std::vector<std::pair<std::string, std::string>> symlinks;     ///< (target, path)
  std::vector<std::string> masked_files;                         ///< /dev/null bound over them
  std::vector<std::string> masked_dirs;                          ///< an empty tmpfs over them
  bool tmpfs_size_supported = false;                             ///< bwrap has --size (0.5+)
  /// Where ro_dirs come from: "" for the host, or a root filesystem directory whose
  /// top-level entries are shown at the sandbox's / (ro_dirs are then paths inside it).
  std::string root;

  /// The running host, probed on first call (thread-safe) with `bwrap --help`.
  static const SystemLayout& host(const std::string& bwrap = "/usr/bin/bwrap");
  /// The top-level entries of the root filesystem at `dir` (directories and files bound
  /// read-only, symlinks recreated; /proc, /dev, /tmp and /sys left to bubblewrap), with
  /// nothing of the host's. invalid_argument when `dir` is not a readable directory.
  static core::Result<SystemLayout> of_rootfs(const std::string& dir, const std::string& bwrap = "/usr/bin/bwrap");
};

/// The bubblewrap argv for one execution at namespace level: new user, pid, ipc, uts,
/// mount (and unless `network`, network) namespaces; system directories read-only; a
/// private /tmp, /dev and /proc; one writable workspace; all capabilities dropped;
/// --die-with-parent (unless turned off) and --new-session (unless the caller gave the
/// child a terminal of its own, see `new_session`). A pure function of its inputs.
///
/// The sandbox's environment is exactly `env` (--clearenv, then --setenv each): whatever
/// bwrap itself was started with never reaches the code. The values are on bwrap's
/// command line, readable by processes that can read the daemon's children's
/// /proc/<pid>/environ anyway; inside, bwrap is pid 1 and only the sandbox sees it.
struct BwrapCommand {
  struct Options {
    std::string bwrap = "/usr/bin/bwrap";
    bool network = false;
    /// The writable workspace, bound at the same path inside; also the working directory
    /// unless `cwd` is set.
    std::string workspace;
    /// When set, the workspace is instead a fresh tmpfs of this size at `workspace` (the
    /// host directory is not shown): the disk limit.
    std::optional<uint64_t> workspace_tmpfs_bytes;
    std::string cwd;                       ///< inside the sandbox; empty: the workspace
    std::vector<std::string> env;          ///< KEY=VALUE, the whole environment inside
    std::vector<std::string> rw_binds;     ///< more host paths bound writable (a kernel's ipc dir)
    std::vector<std::string> ro_binds;     ///< more host paths bound read-only
    std::string hostname = "sandbox";
    /// false: the sandbox outlives the process that started bwrap (the gateway's
    /// sandboxes survive a gateway restart); execd's executions die with it.
    bool die_with_parent = true;
    /// --new-session (setsid inside) guards against TIOCSTI: code that shares the caller's
    /// controlling terminal could push input into the caller's shell (CVE-2017-5226).
    /// false only when the child was given a fresh pseudo-terminal of its own as its
    /// controlling tty (a PTY session): pushed input can reach only the sandbox's own
    /// shell, and a new session would take the terminal (and job control) away.
    bool new_session = true;
    /// Where the workspace appears inside; empty: at its host path.
    std::string workspace_target;
    /// A host path shown at another path inside (the gateway's execd binary, its run dir).
    struct Bind {
      std::string source;
      std::string target;
      bool writable = false;
    };
    std::vector<Bind> binds;
  };

  /// `bwrap <options> -- argv...`. invalid_argument if the workspace is missing or not
  /// absolute, or argv is empty; not_supported for a tmpfs size on a bwrap without --size.
  static core::Result<std::vector<std::string>> build(const Options& options, const std::vector<std::string>& argv,
                                                      const SystemLayout& layout);
};

}  // namespace execd::isolation
