#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/backend.hpp"

namespace execd::isolation {
class CgroupRoot;
}
namespace execd::process {
class ChildReaper;
}

namespace execd::gateway {

/// The embedded backend: each sandbox is an execd started inside bubblewrap at namespace
/// level on this machine, in a cgroup of its own holding the spec's limits, with a
/// tmpfs disk quota on its workspace (WorkspaceQuota says why tmpfs).
///
/// Inside: new user, pid, ipc, uts and mount namespaces; the NETWORK IS THE HOST'S, so
/// the gateway reaches execd on 127.0.0.1:<port> (execd binds 127.0.0.1 and an ephemeral
/// port, written to a port file). The image is `host` (the host's system directories
/// read-only, as execd's own namespace level shows them) or a root filesystem directory
/// under `rootfs_dir`. The execd binary is bound read-only at /.execd/bin/execd; for a
/// root filesystem, the host's dynamic loader and the directory it loads from are bound
/// at /.execd/lib and execd is started through that loader, so an image needs no glibc
/// of its own (libraries outside the loader's directory are not found). The workspace is
/// /workspace inside, the working directory; the environment is exactly the spec's env
/// (plus PATH and HOME when it has none, and EXECD_ACCESS_TOKEN, execd's token), which
/// execd's commands and the entrypoint inherit. bwrap reads its options from a 0600 file
/// (--args), so neither the token nor the env is on a command line other host users can
/// read. execd runs with `--isolation none`: the sandbox is the isolation.
///
/// The entrypoint, when the spec has one, runs beside execd: bwrap starts `/bin/sh -c
/// '<entrypoint> & exec execd ...'`, so the image needs /bin/sh then. Its output goes to
/// the sandbox's log with execd's.
///
/// Sandboxes outlive the gateway: no parent-death signal, their own session, a cgroup
/// that the backend's destructor leaves alone. Each lives under `state_dir/<id>/`:
/// `workspace/`, `run/port` (execd's port file, the one writable bind besides the
/// workspace), `log`, `exit_status` (bwrap's status, written by the keeper) and
/// `record.json` (SandboxRecord: keeper pid + start time, cgroup, quota). The keeper is
/// a small shell in the sandbox's cgroup, outside its namespaces, that waits for bwrap
/// and records how it ended; the gateway's own child exits at once after starting it, so
/// nothing the gateway spawns stays its child (a subreaper gateway still inherits the
/// keeper when it ends: inspect/list/remove reap it with waitpid, as ChildReaper would).
///
/// Placement::handle is the sandbox id (the directory's name). Thread-safe: calls on
/// different sandboxes run in parallel; the service does not call two on one at once.
class ProcessBackend final : public Backend {
 public:
  struct Options {
    std::string execd_binary;      ///< the execd to start in each sandbox
    std::string state_dir;         ///< one subdirectory per sandbox; created if missing
    std::string rootfs_dir;        ///< image.uri names a directory under it; empty: only `host`
    ResourceLimits default_limits; ///< for limits a spec leaves at 0
    size_t max_instances = 0;      ///< live sandboxes at most; 0: no cap of the backend's own
    std::chrono::milliseconds start_timeout{15000};  ///< until execd has written its port
    std::string bwrap = "/usr/bin/bwrap";
    /// The cgroup parent's name (under the gateway's own cgroup); empty: derived from
    /// state_dir, so two gateways on one host keep apart and a restarted one finds its own.
    std::string cgroup_name;
    /// Where the cgroup mounts are read from (CgroupRoot::Options::mountinfo).
    std::string cgroup_mountinfo = "/proc/self/mountinfo";
    /// When set, the short-lived launcher child is spawned through it (so its orphan
    /// reaping never takes the launcher from under us); otherwise process::spawn.
    process::ChildReaper* reaper = nullptr;
  };

  /// Opens (or creates) the state directory and the cgroup parent. unavailable when the
  /// state directory cannot be made, the execd binary or bubblewrap is not executable.
  static core::Result<std::unique_ptr<ProcessBackend>> open(Options options);
  ~ProcessBackend() override;
  ProcessBackend(const ProcessBackend&) = delete;
  ProcessBackend& operator=(const ProcessBackend&) = delete;

  [[nodiscard]] std::string_view name() const override { return "process"; }
  core::Result<void> validate(const SandboxSpec& spec) const override;
  core::Result<void> has_room(const SandboxSpec& spec) const override;
  core::Result<Placement> create(const std::string& sandbox_id, const SandboxSpec& spec,
                                 const std::string& access_token) override;
  core::Result<InstanceStatus> inspect(const Placement& placement) override;
  core::Result<void> pause(const Placement& placement) override;
  core::Result<void> resume(const Placement& placement) override;
  core::Result<void> remove(const Placement& placement) override;
  core::Result<std::vector<Instance>> list() override;
  /// The labels live in the sandbox's record.json beside its keeper's pid.
  core::Result<Placement> create_labelled(const std::string& sandbox_id, const SandboxSpec& spec,
                                          const InstanceLabels& labels) override;
  core::Result<void> relabel(const Placement& placement, const InstanceLabels& labels) override;
  /// The sandbox's directory with a record that has labels and no keeper yet (pid 0):
  /// found as `starting`, counted as a create in progress; create_labelled takes it over.
  core::Result<Placement> reserve(const std::string& sandbox_id, const InstanceLabels& labels) override;
  core::Result<std::optional<Instance>> find(const std::string& sandbox_id) override;

  /// The sandbox's directory (workspace, log, record) on this host: for tests and logs.
  [[nodiscard]] std::string sandbox_dir(const std::string& sandbox_id) const;
  /// The cgroup parent: for tests and the gateway's capacity metric.
  [[nodiscard]] const isolation::CgroupRoot& cgroups() const { return *cgroups_; }

 private:
  explicit ProcessBackend(Options options);
  [[nodiscard]] ResourceLimits effective_limits(const SandboxSpec& spec) const;
  [[nodiscard]] size_t live_count() const;
  core::Result<void> freeze(const Placement& placement, bool frozen);
  core::Result<Placement> start(const std::string& sandbox_id, const SandboxSpec& spec,
                                const InstanceLabels& labels);
  /// The live instance in `dir` (named `id`), or nullopt when none runs there.
  std::optional<Instance> instance_in(const std::string& id, const std::string& dir);

  Options options_;
  std::unique_ptr<isolation::CgroupRoot> cgroups_;
  std::string loader_;      ///< the host's dynamic loader (PT_INTERP of execd), for rootfs images
  /// A relabel's rewrite of record.json never interleaves with the removal of its
  /// directory: a delete right after a pool claim (whose relabel runs on a worker) saw
  /// remove_all fail as the rewrite put a file back, and the DELETE answered remove_failed.
  std::mutex records_mu_;
};

}  // namespace execd::gateway
