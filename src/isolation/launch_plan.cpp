#include "isolation/launch_plan.hpp"

#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <filesystem>

#include <spdlog/spdlog.h>

namespace execd::isolation {

LaunchPlan::~LaunchPlan() { finish(); }

void LaunchPlan::finish(const Cgroup::Reap& reap) {
  if (cgroup && cgroup_pool) {
    // The processes go now (nothing of an execution outlives it); the rmdir, which waits
    // for the killed ones to be reaped, goes to the pool's thread.
    if (auto r = cgroup->kill_all(std::chrono::seconds(5), reap); !r) spdlog::warn("isolation: {}", r.error().message);
    if (reap) reap({});
    cgroup_pool->retire(std::move(cgroup));
  }
  if (cgroup) {
    if (auto r = cgroup->remove(reap); !r) spdlog::warn("isolation: {}", r.error().message);
    cgroup.reset();
  }
  if (!workspace.empty() && cgroup_pool) {
    cgroup_pool->retire_directory(std::move(workspace));
    workspace.clear();
  }
  if (!workspace.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(workspace, ec);
    if (ec) spdlog::warn("isolation: cannot remove workspace {}: {}", workspace, ec.message());
    workspace.clear();
  }
}

std::optional<LimitHit> LaunchPlan::limit_hit(int wait_status, const CgroupUsage& baseline) const {
  const bool has_group = cgroup != nullptr;
  const CgroupUsage usage = has_group ? cgroup->usage() : CgroupUsage{};
  if (auto mb = limits.get(Limit::memory_mb); mb && has_group && usage.oom_kills > baseline.oom_kills) {
    return LimitHit{Limit::memory_mb, *mb,
                    "killed: memory limit of " + std::to_string(*mb) + " MiB reached (OOM kill)"};
  }
  if (auto s = limits.get(Limit::cpu_time_s)) {
    // At namespace level bwrap turns its child's signal into exit status 128+signal, as a
    // shell does for a killed grandchild; the group's usage covers every process at once.
    const bool xcpu = (WIFSIGNALED(wait_status) && WTERMSIG(wait_status) == SIGXCPU) ||
                      (WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == 128 + SIGXCPU);
    const uint64_t used = usage.cpu_usage_ns.value_or(0) - std::min(usage.cpu_usage_ns.value_or(0),
                                                                     baseline.cpu_usage_ns.value_or(0));
    if (xcpu || used >= *s * 1000000000ULL) {
      return LimitHit{Limit::cpu_time_s, *s, "killed: CPU time limit of " + std::to_string(*s) + " s reached"};
    }
  }
  if (auto n = limits.get(Limit::processes); n && has_group && usage.pids_limit_hits > baseline.pids_limit_hits) {
    return LimitHit{Limit::processes, *n,
                    "process limit of " + std::to_string(*n) + " reached: " +
                        std::to_string(usage.pids_limit_hits - baseline.pids_limit_hits) +
                        " fork(s) refused; what was left was killed"};
  }
  return std::nullopt;
}

}  // namespace execd::isolation
