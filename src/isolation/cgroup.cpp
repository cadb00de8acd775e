#include "isolation/cgroup.hpp"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <set>
#include <sstream>
#include <thread>

#include <spdlog/spdlog.h>

#include "core/fd_io.hpp"

namespace execd::isolation {
namespace {

using Clock = std::chrono::steady_clock;

std::optional<uint64_t> parse_u64(std::string_view s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.remove_suffix(1);
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

bool exists(const std::string& path) { return ::access(path.c_str(), F_OK) == 0; }

}  // namespace

std::optional<uint64_t> read_cgroup_number(const std::string& path) {
  const std::string text = core::read_file(path);
  if (text.rfind("max", 0) == 0) return UINT64_MAX;
  return parse_u64(text);
}

std::optional<uint64_t> read_cgroup_key(const std::string& path, const std::string& key) {
  std::istringstream in(core::read_file(path));
  std::string k;
  std::string v;
  while (in >> k >> v) {
    if (k == key) return parse_u64(v);
  }
  return std::nullopt;
}

core::Result<void> write_cgroup_file(const std::string& path, const std::string& text) {
  core::UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd.valid() || ::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
    const int err = errno;
    return core::make_error(err == EACCES || err == EPERM ? core::Errc::permission_denied : core::Errc::unavailable,
                            "cannot write '" + text + "' to " + path + ": " + std::strerror(err));
  }
  return {};
}

std::vector<pid_t> read_cgroup_procs(const std::string& dir) {
  std::vector<pid_t> out;
  std::istringstream in(core::read_file(dir + "/cgroup.procs"));
  long pid = 0;
  while (in >> pid) out.push_back(static_cast<pid_t>(pid));
  return out;
}

std::vector<std::string> child_groups(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    std::error_code ec2;
    if (e.is_directory(ec2)) out.push_back(e.path().filename().string());
  }
  return out;
}

Cgroup::Cgroup(int version, std::map<std::string, std::string> dirs) : version_(version), dirs_(std::move(dirs)) {}

Cgroup::~Cgroup() {
  if (auto r = remove(); !r) spdlog::warn("isolation: {}", r.error().message);
}

std::string Cgroup::dir(const std::string& controller) const {
  if (version_ == 2) return dirs_.empty() ? std::string() : dirs_.begin()->second;
  auto it = dirs_.find(controller);
  return it == dirs_.end() ? std::string() : it->second;
}

core::Result<void> Cgroup::set_memory_limit(uint64_t bytes) {
  const std::string d = dir("memory");
  if (d.empty()) return core::make_error(core::Errc::not_supported, "no memory controller in this cgroup");
  const std::string value = std::to_string(bytes);
  if (version_ == 2) {
    if (auto r = write_cgroup_file(d + "/memory.max", value); !r) return r;
    // Without this the group would swap instead of being OOM-killed at the limit.
    if (exists(d + "/memory.swap.max")) return write_cgroup_file(d + "/memory.swap.max", "0");
    return {};
  }
  if (auto r = write_cgroup_file(d + "/memory.limit_in_bytes", value); !r) return r;
  // memsw (memory + swap) must be >= the memory limit, so it is set second.
  if (exists(d + "/memory.memsw.limit_in_bytes")) return write_cgroup_file(d + "/memory.memsw.limit_in_bytes", value);
  return {};
}

core::Result<void> Cgroup::set_pids_limit(uint64_t count) {
  const std::string d = dir("pids");
  if (d.empty()) return core::make_error(core::Errc::not_supported, "no pids controller in this cgroup");
  return write_cgroup_file(d + "/pids.max", std::to_string(count));
}

core::Result<void> Cgroup::set_cpu_quota(uint32_t millis) {
  const std::string d = dir("cpu");
  if (d.empty()) return core::make_error(core::Errc::not_supported, "no cpu controller in this cgroup");
  constexpr uint64_t kPeriodUs = 100000;
  // millis/1000 of a core = millis*100 us of CPU time per 100 ms period.
  const uint64_t quota = std::max<uint64_t>(static_cast<uint64_t>(millis) * kPeriodUs / 1000, 1000);
  if (version_ == 2) return write_cgroup_file(d + "/cpu.max", std::to_string(quota) + " " + std::to_string(kPeriodUs));
  if (auto r = write_cgroup_file(d + "/cpu.cfs_period_us", std::to_string(kPeriodUs)); !r) return r;
  return write_cgroup_file(d + "/cpu.cfs_quota_us", std::to_string(quota));
}

core::Result<void> Cgroup::freeze(bool frozen, std::chrono::milliseconds timeout) {
  const std::string d = version_ == 2 ? dir("") : dir("freezer");
  const std::string file = version_ == 2 ? "/cgroup.freeze" : "/freezer.state";
  if (d.empty() || !exists(d + file)) return core::make_error(core::Errc::not_supported, "no freezer for this cgroup");
  if (auto r = write_cgroup_file(d + file, version_ == 2 ? (frozen ? "1" : "0") : (frozen ? "FROZEN" : "THAWED")); !r) {
    return r;
  }
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    // v1 passes through FREEZING while tasks are stopped one by one; v2 flips
    // cgroup.events "frozen" once every task is stopped.
    const bool reached = version_ == 2 ? read_cgroup_key(d + "/cgroup.events", "frozen") == (frozen ? 1u : 0u)
                                       : is_frozen() == frozen && core::read_file(d + file).rfind("FREEZING", 0) != 0;
    if (reached) return {};
    if (Clock::now() >= deadline) {
      std::string seen = core::read_file(d + (version_ == 2 ? "/cgroup.events" : file));
      while (!seen.empty() && seen.back() == '\n') seen.pop_back();
      return core::make_error(core::Errc::unavailable, std::string(frozen ? "freezing " : "thawing ") + d +
                                                           " did not settle within " +
                                                           std::to_string(timeout.count()) + " ms (" + seen + ")");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

bool Cgroup::is_frozen() const {
  if (version_ == 2) return read_cgroup_key(dir("") + "/cgroup.events", "frozen") == 1u;
  const std::string d = dir("freezer");
  return !d.empty() && core::read_file(d + "/freezer.state").rfind("FROZEN", 0) == 0;
}

void Cgroup::release() {
  procs_fds_.clear();
  dir_fd_.reset();
  removed_ = true;
}

core::Result<void> Cgroup::add(pid_t pid) {
  for (const auto& [controller, d] : dirs_) {
    if (auto r = write_cgroup_file(d + "/cgroup.procs", std::to_string(pid)); !r) return r;
  }
  return {};
}

core::Result<std::vector<int>> Cgroup::procs_fds() {
  if (procs_fds_.empty()) {
    for (const auto& [controller, d] : dirs_) {
      core::UniqueFd fd(::open((d + "/cgroup.procs").c_str(), O_WRONLY | O_CLOEXEC));
      if (!fd.valid()) {
        const int err = errno;
        procs_fds_.clear();
        return core::make_error(core::Errc::unavailable, "cannot open " + d + "/cgroup.procs: " + std::strerror(err));
      }
      procs_fds_.push_back(std::move(fd));
    }
  }
  std::vector<int> out;
  for (const auto& fd : procs_fds_) out.push_back(fd.get());
  return out;
}

core::Result<int> Cgroup::dir_fd() {
  if (version_ != 2) return -1;
  if (!dir_fd_.valid()) {
    dir_fd_.reset(::open(dir("").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!dir_fd_.valid()) {
      return core::make_error(core::Errc::unavailable, "cannot open " + dir("") + ": " + std::strerror(errno));
    }
  }
  return dir_fd_.get();
}

std::vector<pid_t> Cgroup::pids() const {
  std::set<pid_t> all;
  for (const auto& [controller, d] : dirs_) {
    for (pid_t p : read_cgroup_procs(d)) all.insert(p);
  }
  return {all.begin(), all.end()};
}

CgroupUsage Cgroup::usage() const {
  CgroupUsage u;
  if (version_ == 2) {
    const std::string d = dir("");
    u.memory_peak_bytes = read_cgroup_number(d + "/memory.peak");
    if (auto usec = read_cgroup_key(d + "/cpu.stat", "usage_usec")) u.cpu_usage_ns = *usec * 1000;
    u.pids_current = read_cgroup_number(d + "/pids.current");
    u.oom_kills = read_cgroup_key(d + "/memory.events", "oom_kill").value_or(0);
    u.pids_limit_hits = read_cgroup_key(d + "/pids.events", "max").value_or(0);
    return u;
  }
  if (const std::string d = dir("memory"); !d.empty()) {
    u.memory_peak_bytes = read_cgroup_number(d + "/memory.max_usage_in_bytes");
    u.oom_kills = read_cgroup_key(d + "/memory.oom_control", "oom_kill").value_or(0);
  }
  if (const std::string d = dir("cpuacct"); !d.empty()) u.cpu_usage_ns = read_cgroup_number(d + "/cpuacct.usage");
  if (const std::string d = dir("pids"); !d.empty()) {
    u.pids_current = read_cgroup_number(d + "/pids.current");
    u.pids_limit_hits = read_cgroup_key(d + "/pids.events", "max").value_or(0);
  }
  return u;
}

core::Result<void> Cgroup::kill_all(std::chrono::milliseconds timeout, const Reap& reap) {
  const auto deadline = Clock::now() + timeout;
  const std::string one = dir("");
  if (version_ == 2 && exists(one + "/cgroup.kill")) {
    // The kernel kills every member and blocks new forks in one step.
    if (!pids().empty()) {
      if (auto r = write_cgroup_file(one + "/cgroup.kill", "1"); !r) return r;
    }
  }
  const std::string freezer = version_ == 2 ? (exists(one + "/cgroup.freeze") ? one : "") : dir("freezer");
  const std::string freeze_file = version_ == 2 ? "/cgroup.freeze" : "/freezer.state";
  const std::string frozen = version_ == 2 ? "1" : "FROZEN";
  const std::string thawed = version_ == 2 ? "0" : "THAWED";
  std::set<pid_t> killed;
  for (int round = 0;; ++round) {
    const std::vector<pid_t> members = pids();
    if (members.empty()) return {};
    if (Clock::now() >= deadline) {
      return core::make_error(core::Errc::unavailable, std::to_string(members.size()) +
                                                           " process(es) still in cgroup " + dirs_.begin()->second +
                                                           " after kill");
    }
    // Most groups hold nothing at the end, or tasks that are already going (a sandbox's
    // init outlives the bwrap that reported its exit status by a moment): SIGKILL what is
    // listed, without the freezer, whose round trip cost milliseconds. Only a member not
    // killed before (a fork that raced the kill) needs the freezer: frozen, nothing can
    // fork between reading the list and the kill; the SIGKILLs are delivered when thawed.
    // A freeze that has not settled yet still stops new forks.
    const bool fresh = std::any_of(members.begin(), members.end(), [&](pid_t p) { return killed.count(p) == 0; });
    std::vector<pid_t> victims = members;
    if (round == 0 || !fresh) {
      for (pid_t p : victims) ::kill(p, SIGKILL);
      // Members that outlived a SIGKILL may be frozen (a paused sandbox): a frozen task
      // takes its SIGKILL only once thawed.
      if (round > 0 && !freezer.empty()) (void)write_cgroup_file(freezer + freeze_file, thawed);
    } else {
      const bool froze = !freezer.empty() && write_cgroup_file(freezer + freeze_file, frozen).ok();
      victims = pids();
      for (pid_t p : victims) ::kill(p, SIGKILL);
      if (froze) (void)write_cgroup_file(freezer + freeze_file, thawed);
    }
    killed.insert(victims.begin(), victims.end());
    if (reap) reap(victims);
    if (pids().empty()) continue;  // gone already: no need to sleep
    // Short first: a killed task is usually gone within a fraction of a millisecond.
    std::this_thread::sleep_for(std::chrono::microseconds(round < 20 ? 100 : 1000));
  }
}

core::Result<void> Cgroup::rename(const std::string& name) {
  if (version_ != 1) return core::make_error(core::Errc::not_supported, "cgroup v2 cannot rename a group");
  std::map<std::string, std::string> renamed;  // old dir -> new (co-mounted controllers share one)
  for (auto& [controller, d] : dirs_) {
    if (auto it = renamed.find(d); it != renamed.end()) {
      d = it->second;
      continue;
    }
    const std::string to = d.substr(0, d.rfind('/') + 1) + name;
    if (::rename(d.c_str(), to.c_str()) != 0) {
      return core::make_error(core::Errc::unavailable, "cannot rename cgroup " + d + " to " + name + ": " +
                                                           std::strerror(errno));
    }
    renamed[d] = to;
    d = to;
  }
  return {};
}

core::Result<void> Cgroup::remove(const Reap& reap, std::chrono::milliseconds busy_wait) {
  if (removed_) return {};
  procs_fds_.clear();
  dir_fd_.reset();
  if (auto r = kill_all(std::chrono::seconds(5), reap); !r) return r;
  std::string failed;
  // A killed task leaves its group only once it has been reaped (by whoever is its
  // parent: a sandbox's init, the spawner); rmdir says EBUSY until then, which under load
  // took over a second. One deadline for every controller's directory.
  const auto busy_deadline = Clock::now() + busy_wait;
  for (const auto& [controller, d] : dirs_) {
    for (;;) {
      if (::rmdir(d.c_str()) == 0 || errno == ENOENT) break;
      if (errno != EBUSY) {
        failed = d + ": " + std::strerror(errno);
        break;
      }
      // A child group keeps it busy for good: no point waiting for that.
      if (Clock::now() >= busy_deadline || !child_groups(d).empty()) break;
      if (reap) reap({});
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    if (exists(d) && failed.empty()) failed = d + ": still busy";
  }
  if (!failed.empty()) return core::make_error(core::Errc::unavailable, "cannot remove cgroup " + failed);
  removed_ = true;
  return {};
}

}  // namespace execd::isolation
