#include "isolation/launch_plan.hpp"

#include <signal.h>
#include <sys/wait.h>

#include <filesystem>

#include <spdlog/spdlog.h>

namespace execd::isolation {

LaunchPlan::~LaunchPlan() { finish(); }

void LaunchPlan::finish() {
  if (cgroup) {
    if (auto r = cgroup->remove(); !r) spdlog::warn("isolation: {}", r.error().message);
    cgroup.reset();
  }
  if (!workspace.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(workspace, ec);
    if (ec) spdlog::warn("isolation: cannot remove workspace {}: {}", workspace, ec.message());
    workspace.clear();
  }
}

std::optional<LimitHit> LaunchPlan::limit_hit(int wait_status) const {
  const bool has_group = cgroup != nullptr;
  const CgroupUsage usage = has_group ? cgroup->usage() : CgroupUsage{};
  if (auto mb = limits.get(Limit::memory_mb); mb && has_group && usage.oom_kills > 0) {
    return LimitHit{Limit::memory_mb, *mb,
                    "killed: memory limit of " + std::to_string(*mb) + " MiB reached (OOM kill)"};
  }
  const bool signalled = WIFSIGNALED(wait_status);
  if (auto s = limits.get(Limit::cpu_time_s); s && signalled && WTERMSIG(wait_status) == SIGXCPU) {
    return LimitHit{Limit::cpu_time_s, *s, "killed: CPU time limit of " + std::to_string(*s) + " s reached"};
  }
  if (auto n = limits.get(Limit::processes); n && has_group && usage.pids_limit_hits > 0) {
    return LimitHit{Limit::processes, *n,
                    "process limit of " + std::to_string(*n) + " reached: " +
                        std::to_string(usage.pids_limit_hits) + " fork(s) refused"};
  }
  return std::nullopt;
}

}  // namespace execd::isolation
