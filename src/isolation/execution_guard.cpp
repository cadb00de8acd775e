#include "isolation/execution_guard.hpp"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <set>

#include <spdlog/spdlog.h>

namespace execd::isolation {

bool ExecutionGuard::needed(const Limits& limits) {
  if (limits.level != Level::none) return true;
  return std::any_of(limits.values.begin(), limits.values.end(), [](const auto& v) { return v.has_value(); });
}

core::Result<std::unique_ptr<ExecutionGuard>> ExecutionGuard::make(Isolator& isolator,
                                                                   const Limits& limits,
                                                                   process::SpawnOptions& so, const std::string& id,
                                                                   std::vector<std::string> rw_binds,
                                                                   bool cpu_limit_per_unit, bool own_terminal) {
  auto plan = isolator.prepare(limits,
                               {so.argv, so.env, so.cwd, id, std::move(rw_binds), cpu_limit_per_unit, own_terminal});
  if (!plan) return plan.error();
  auto guard = std::make_unique<ExecutionGuard>(std::move(plan).value());
  const LaunchPlan& p = guard->plan_;
  so.argv = p.argv;
  so.env = p.env;
  so.cwd = p.cwd;
  if (!p.child.empty()) {
    so.child_setup = &ExecutionGuard::run_child_steps;
    so.child_setup_arg = &p.child;
  }
  return guard;
}

int ExecutionGuard::run_child_steps(const void* arg, const char** failed_step) noexcept {
  return static_cast<const ChildSteps*>(arg)->apply(failed_step);
}

ExecutionGuard::ExecutionGuard(LaunchPlan plan) : plan_(std::move(plan)) {}

ExecutionGuard::~ExecutionGuard() { finish(); }

size_t ExecutionGuard::admit_output(size_t n, bool* capped_now) {
  const auto cap = plan_.max_output_bytes;
  if (!cap) return n;
  if (output_bytes_ >= *cap) return 0;
  const uint64_t room = *cap - output_bytes_;
  if (n < room) {
    output_bytes_ += n;
    return n;
  }
  output_bytes_ = *cap;
  if (capped_now != nullptr) *capped_now = true;
  return static_cast<size_t>(room);
}

bool ExecutionGuard::signal(int sig, pid_t pgid) const {
  bool reached = false;
  if (!in_namespace()) reached = process::signal_group(pgid, sig);
  if (!plan_.cgroup) return reached;
  for (const pid_t p : plan_.cgroup->pids()) {
    if (p == pgid) continue;
    // Members of the group were reached above; these are the ones that left it (setsid).
    if (!in_namespace() && ::getpgid(p) == pgid) continue;
    if (::kill(p, sig) == 0) reached = true;
  }
  return reached;
}

void ExecutionGuard::record_kill(Limit limit) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!recorded_) recorded_ = limit;
}

std::vector<pid_t> ExecutionGuard::members() const {
  return plan_.cgroup ? plan_.cgroup->pids() : std::vector<pid_t>{};
}

CgroupUsage ExecutionGuard::usage() const {
  return plan_.cgroup ? plan_.cgroup->usage() : CgroupUsage{};
}

bool ExecutionGuard::cpu_exceeded(const CgroupUsage& baseline) const {
  const auto limit = plan_.limits.get(Limit::cpu_time_s);
  if (!limit || !plan_.cgroup) return false;
  const auto now = plan_.cgroup->usage().cpu_usage_ns;
  if (!now) return false;
  const uint64_t before = std::min(*now, baseline.cpu_usage_ns.value_or(0));
  return *now - before >= *limit * 1000000000ULL;
}

std::optional<LimitHit> ExecutionGuard::limit_hit(int wait_status,
                                                            const CgroupUsage& baseline) const {
  std::optional<Limit> recorded;
  {
    std::lock_guard<std::mutex> lock(mu_);
    recorded = recorded_;
  }
  if (recorded) {
    const uint64_t value = plan_.limits.get(*recorded).value_or(0);
    if (*recorded == Limit::output_bytes) {
      return LimitHit{*recorded, value,
                                 "killed: output limit of " + std::to_string(value) +
                                     " bytes reached (max_output_bytes); later output was dropped"};
    }
    if (*recorded == Limit::cpu_time_s) {
      return LimitHit{*recorded, value,
                                 "killed: CPU time limit of " + std::to_string(value) +
                                     " s reached (all processes of the execution together)"};
    }
  }
  return plan_.limit_hit(wait_status, baseline);
}

void ExecutionGuard::add_usage(nlohmann::json& accounting, const CgroupUsage& baseline) const {
  if (!plan_.cgroup) return;
  const auto u = plan_.cgroup->usage();
  // A peak since a baseline cannot be read (the counter is the group's whole life), so a
  // session's run reports none.
  if (!baseline.memory_peak_bytes && u.memory_peak_bytes && *u.memory_peak_bytes != UINT64_MAX) {
    accounting["cgroup_peak_memory_mb"] = static_cast<double>(*u.memory_peak_bytes) / (1024.0 * 1024.0);
  }
  if (u.cpu_usage_ns) {
    const uint64_t before = std::min(*u.cpu_usage_ns, baseline.cpu_usage_ns.value_or(0));
    accounting["cgroup_cpu_time_ms"] = (*u.cpu_usage_ns - before) / 1000000;
  }
  if (u.oom_kills > baseline.oom_kills) accounting["oom_kills"] = u.oom_kills - baseline.oom_kills;
}

nlohmann::json ExecutionGuard::killed_json(const LimitHit& hit) {
  nlohmann::json j = {{"limit", std::string(isolation::limit_name(hit.limit))},
                      {"field", std::string(isolation::field_name(hit.limit))},
                      {std::string(isolation::value_key(hit.limit)), hit.value},
                      {"message", hit.message}};
  if (hit.limit == Limit::memory_mb) j["oom_kill"] = true;
  return j;
}

Cgroup::Reap ExecutionGuard::reaper() {
  // Killed orphans come back to the daemon (the subreaper): reap them between kill
  // rounds, or they would hold the cgroup until the reaper's next periodic pass. By pid:
  // ChildReaper's pass stops at any owned child that exited, which may be another
  // execution's leader waiting for this very (reactor) thread.
  return [this](const std::vector<pid_t>& killed) {
    unreaped_.insert(killed.begin(), killed.end());
    for (auto it = unreaped_.begin(); it != unreaped_.end();) {
      const pid_t r = ::waitpid(*it, nullptr, WNOHANG);
      // Reaped, or not ours and gone (its own parent reaped it): done with it.
      const bool done = r == *it || (r < 0 && errno == ECHILD && ::kill(*it, 0) != 0);
      it = done ? unreaped_.erase(it) : std::next(it);
    }
  };
}

void ExecutionGuard::finish_processes() {
  if (!plan_.cgroup) return;
  if (auto r = plan_.cgroup->kill_all(std::chrono::seconds(5), reaper()); !r) {
    spdlog::warn("isolation: {}", r.error().message);
  }
}

void ExecutionGuard::finish() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (finished_) return;
    finished_ = true;
  }
  plan_.finish(reaper());
}

}  // namespace execd::isolation
