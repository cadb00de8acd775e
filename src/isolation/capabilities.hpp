#pragma once

#include <array>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.hpp"
#include "isolation/limits.hpp"

namespace execd::isolation {

class CgroupRoot;

/// How a limit is enforced on this host.
enum class Mechanism { none, cgroup_v1, cgroup_v2, rlimit, daemon, tmpfs };
/// "none", "cgroup-v1", "cgroup-v2", "rlimit", "daemon", "tmpfs".
std::string_view mechanism_name(Mechanism m);

struct LevelSupport {
  bool supported = false;
  std::string reason;  ///< why not; for a supported level, empty
};

struct LimitSupport {
  bool supported = false;
  Mechanism mechanism = Mechanism::none;
  std::string reason;  ///< why not, or the weakness of the mechanism used
};

/// What this host can enforce right now; see probe().
struct Capabilities {
  std::array<LevelSupport, 3> levels;                 ///< indexed by Level
  std::array<LimitSupport, kAllLimits.size()> limits;  ///< indexed by Limit
  int cgroup_version = 0;                             ///< 0: no usable cgroup
  std::vector<std::string> cgroup_controllers;        ///< writable ones
  std::string cgroup_reason;                          ///< why some or all are not
  std::string bwrap_path;                             ///< empty when not found

  [[nodiscard]] const LevelSupport& level(Level l) const { return levels[static_cast<size_t>(l)]; }
  [[nodiscard]] const LimitSupport& limit(Limit l) const { return limits[static_cast<size_t>(l)]; }
};

/// Probes the host: bubblewrap at `bwrap` present and able to start a sandbox (run once:
/// `bwrap --unshare-all --ro-bind / / true`, so user namespaces being refused shows up
/// here), and which cgroup controllers `cgroups` could make writable children for;
/// rlimits stand in where cgroups are missing, with their weakness as the reason. Takes
/// tens of milliseconds: call once and keep the answer (Isolator does).
Capabilities probe(const CgroupRoot& cgroups, const std::string& bwrap = "/usr/bin/bwrap");

/// invalid_argument (naming the field) when `limits` asks for a level or limit `caps`
/// says this host cannot enforce, or for a combination that cannot hold (network off or
/// a disk limit below namespace level): never a run without what was asked for.
core::Result<void> check(const Limits& limits, const Capabilities& caps);

}  // namespace execd::isolation
