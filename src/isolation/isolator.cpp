#include "isolation/isolator.hpp"

#include <pwd.h>
#include <sys/resource.h>
#include <unistd.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "isolation/bwrap_command.hpp"

namespace execd::isolation {
namespace {

constexpr uint64_t kMiB = uint64_t{1} << 20;
constexpr const char* kDefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

bool has_key(const std::vector<std::string>& env, std::string_view key) {
  return std::any_of(env.begin(), env.end(), [key](const std::string& kv) {
    return kv.size() > key.size() && kv.compare(0, key.size(), key) == 0 && kv[key.size()] == '=';
  });
}

// The isolated levels build the environment from the request and --envs-file only; a
// shell still needs a PATH and a HOME, which come from here, not from the daemon.
void add_default(std::vector<std::string>& env, std::string_view key, const std::string& value) {
  if (!has_key(env, key)) env.push_back(std::string(key) + "=" + value);
}

std::string home_of_user() {
  struct passwd pw {};
  struct passwd* found = nullptr;
  char buf[4096];
  if (::getpwuid_r(::geteuid(), &pw, buf, sizeof buf, &found) == 0 && found != nullptr && found->pw_dir != nullptr) {
    return found->pw_dir;
  }
  return "/";
}

}  // namespace

Isolator::Isolator(Options options) : options_(std::move(options)), cgroups_(CgroupRoot::open(options_.cgroups)) {
  if (cgroups_->version() != 0 && options_.cgroup_pool_size > 0) {
    pool_ = std::make_shared<CgroupPool>(cgroups_, CgroupPool::Options{options_.cgroup_pool_size});
  }
  if (options_.workspace_base.empty()) {
    const char* tmp = std::getenv("TMPDIR");
    options_.workspace_base = std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp");
  }
}

void Isolator::remove_cgroups() {
  if (pool_) pool_->close();  // no spare made after the parent's sweep below
  cgroups_->remove_all();
}

const Capabilities& Isolator::capabilities() {
  std::call_once(probed_, [this] { caps_ = probe(*cgroups_, options_.bwrap); });
  return caps_;
}

core::Result<void> Isolator::check(const Limits& limits) { return isolation::check(limits, capabilities()); }

core::Result<LaunchPlan> Isolator::prepare(const Limits& limits, LaunchRequest request) {
  if (auto r = check(limits); !r) return r.error();
  if (request.argv.empty()) return core::make_error(core::Errc::invalid_argument, "nothing to run");
  const Capabilities& caps = capabilities();
  LaunchPlan plan;
  plan.limits = limits;
  plan.env = std::move(request.env);
  if (limits.level != Level::none) add_default(plan.env, "PATH", kDefaultPath);
  if (limits.level == Level::process) add_default(plan.env, "HOME", home_of_user());
  plan.max_output_bytes = limits.get(Limit::output_bytes);
  plan.child.no_new_privs = limits.level != Level::none;

  const bool cgroup_memory = limits.get(Limit::memory_mb) && caps.limit(Limit::memory_mb).mechanism != Mechanism::rlimit;
  const bool cgroup_pids = limits.get(Limit::processes) && caps.limit(Limit::processes).mechanism != Mechanism::rlimit;
  // Any cgroup-capable host gets a group per isolated execution even without a limit:
  // it is how every descendant is found and killed at the end.
  // A per-unit CPU limit is measured on a cgroup, so it asks for one at any level.
  const bool cgroup_cpu = request.cpu_limit_per_unit && limits.get(Limit::cpu_time_s);
  if (cgroups_->version() != 0 && (cgroup_memory || cgroup_pids || cgroup_cpu || limits.level != Level::none)) {
    const std::string name = request.id.empty() ? "x" : request.id;
    auto group = pool_ ? pool_->take(name) : cgroups_->create(name);
    if (!group) return group.error();
    plan.cgroup = std::move(group).value();
    plan.cgroup_pool = pool_;
    if (cgroup_memory) {
      if (auto r = plan.cgroup->set_memory_limit(*limits.get(Limit::memory_mb) * kMiB); !r) return r.error();
    }
    if (cgroup_pids) {
      if (auto r = plan.cgroup->set_pids_limit(*limits.get(Limit::processes)); !r) return r.error();
    }
    auto fds = plan.cgroup->procs_fds();
    if (!fds) return fds.error();
    plan.child.cgroup_procs_fds = *fds;
  }
  if (auto mb = limits.get(Limit::memory_mb); mb && !cgroup_memory) {
    plan.child.rlimits.push_back({RLIMIT_AS, *mb * kMiB, *mb * kMiB});
  }
  if (auto n = limits.get(Limit::processes); n && !cgroup_pids) {
    plan.child.rlimits.push_back({RLIMIT_NPROC, *n, *n});
  }
  if (auto s = limits.get(Limit::cpu_time_s);
      s && !(request.cpu_limit_per_unit && plan.cgroup && plan.cgroup->usage().cpu_usage_ns)) {
    // SIGXCPU at the soft limit names the cause; SIGKILL a second later if it is ignored.
    plan.child.rlimits.push_back({RLIMIT_CPU, *s, *s + 1});
  }
  if (auto n = limits.get(Limit::open_files)) plan.child.rlimits.push_back({RLIMIT_NOFILE, *n, *n});

  if (limits.level != Level::namespace_) {
    plan.argv = std::move(request.argv);
    plan.cwd = std::move(request.cwd);
    return plan;
  }

  BwrapCommand::Options b;
  b.bwrap = options_.bwrap;
  b.network = limits.has_network();
  b.new_session = !request.own_terminal;
  b.rw_binds = std::move(request.rw_binds);
  b.env = std::move(plan.env);
  plan.env.clear();  // bwrap itself needs nothing; the sandbox gets b.env
  if (auto mb = limits.get(Limit::disk_mb)) {
    if (!request.cwd.empty()) {
      return core::make_error(core::Errc::invalid_argument,
                              "field 'disk_limit_mb' caps a fresh workspace and cannot be combined with 'cwd'");
    }
    b.workspace_tmpfs_bytes = *mb * kMiB;
  }
  if (!request.cwd.empty()) {
    struct stat st {};
    if (request.cwd.front() != '/' || ::stat(request.cwd.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
      return core::make_error(core::Errc::invalid_argument,
                              "field 'cwd': '" + request.cwd + "' is not an existing absolute directory");
    }
    b.workspace = request.cwd;
  } else {
    const std::string base = options_.workspace_base + "/workspaces";
    if (::mkdir(base.c_str(), 0700) != 0 && errno != EEXIST) {
      return core::make_error(core::Errc::unavailable, "cannot create " + base + ": " + std::strerror(errno));
    }
    const std::string dir = base + "/" + (request.id.empty() ? "x" : request.id);
    if (::mkdir(dir.c_str(), 0700) != 0) {
      return core::make_error(core::Errc::unavailable, "cannot create workspace " + dir + ": " + std::strerror(errno));
    }
    plan.workspace = dir;
    b.workspace = dir;
  }
  // The host's home directory is not in the sandbox; the workspace is the one place to write.
  add_default(b.env, "HOME", b.workspace);
  auto argv = BwrapCommand::build(b, request.argv, SystemLayout::host(options_.bwrap));
  if (!argv) return argv.error();
  plan.argv = std::move(argv).value();
  return plan;
}

}  // namespace execd::isolation
