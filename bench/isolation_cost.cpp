// Per-execution cost of `true` at each isolation level, with no HTTP, every case measured
// in the same run and interleaved (each round runs every case once, in turn), so a loaded
// machine slows all of them alike; medians over the rounds. Like the daemon, it is the
// subreaper of what it starts.
//
// process: bare fork+exec, then the level with its cgroup made and removed in place
// (--cgroup-pool-size 0) and taken from the pool (the default; the pool refills and
// removes between rounds, off the timed path, as it does between requests).
//
// namespace: a chain of bwrap argvs, each adding one thing the daemon's argv has, from
// the bare `bwrap --unshare-all --ro-bind / / /bin/true` to exactly the daemon's
// argv ("same argv", the floor for what bwrap itself costs), then the daemon's own work
// around it (the workspace, the cgroup). Each step's share is the median over rounds of
// its time minus the previous case's in the same round (paired: load that comes and goes
// between rounds cancels out).
//   build/bench/isolation_cost [rounds]     (root, for the cgroup parts)
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "isolation/bwrap_command.hpp"
#include "isolation/isolator.hpp"

using namespace execd::isolation;
using Clock = std::chrono::steady_clock;

namespace {

int run(const ChildSteps& steps, const std::vector<std::string>& argv, const std::vector<std::string>& env) {
  std::vector<char*> a;
  for (const auto& s : argv) a.push_back(const_cast<char*>(s.c_str()));
  a.push_back(nullptr);
  std::vector<char*> e;
  for (const auto& s : env) e.push_back(const_cast<char*>(s.c_str()));
  e.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    const char* step = nullptr;
    if (steps.apply(&step) != 0) ::_exit(126);
    ::execve(a[0], a.data(), e.data());
    ::_exit(127);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return status;
}

// Like the daemon, the bench is the subreaper of what it starts: a sandbox's init that
// outlives the bwrap that reported its exit status comes back to it, and is reaped here.
void reap_orphans() {
  while (::waitpid(-1, nullptr, WNOHANG) > 0) {
  }
}

struct Case {
  std::string name;
  std::function<void()> once;
  std::function<void()> between;  // untimed, after each timed run
  std::vector<double> ms;
};

double quantile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  return v[static_cast<size_t>(q * static_cast<double>(v.size() - 1))];
}

double median(const std::vector<double>& v) { return quantile(v, 0.5); }

double load_average() {
  double l = -1;
  if (FILE* f = std::fopen("/proc/loadavg", "r")) {
    if (std::fscanf(f, "%lf", &l) != 1) l = -1;
    std::fclose(f);
  }
  return l;
}

}  // namespace

int main(int argc, char** argv) {
  const int rounds = argc > 1 ? std::atoi(argv[1]) : 100;
  ::prctl(PR_SET_CHILD_SUBREAPER, 1);
  const std::vector<std::string> env = {"PATH=/usr/bin:/bin"};
  const std::vector<std::string> truth = {"/bin/true"};
  Isolator::Options pooled_options;
  Isolator pooled(pooled_options);
  Isolator::Options unpooled_options;
  unpooled_options.cgroup_pool_size = 0;
  Isolator unpooled(unpooled_options);
  // The same namespace level without any cgroup: the workspace is the daemon's only work.
  Isolator::Options no_cgroup_options;
  no_cgroup_options.cgroups.mountinfo = "/nonexistent";
  Isolator no_cgroup(no_cgroup_options);
  int failures = 0;
  int seq = 0;
  const auto check = [&failures](int status) {
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) ++failures;
  };
  const auto limits_at = [](Isolator& iso, Level level) {
    Limits l;
    l.level = level;
    // The memory and pids limits are the cgroup's (written on each execution's group);
    // without cgroups, only what an rlimit can do.
    if (iso.cgroups().version() != 0) {
      l.set(Limit::processes, 100);
      l.set(Limit::memory_mb, 256);
    }
    l.set(Limit::open_files, 256);
    return l;
  };
  const auto at_level = [&](Isolator& iso, Level level, bool wait_init = false) {
    return [&, level, wait_init] {
      auto plan = iso.prepare(limits_at(iso, level), {truth, env, "", "bench-" + std::to_string(++seq), {}});
      if (!plan) {
        std::fprintf(stderr, "prepare: %s\n", plan.error().message.c_str());
        std::exit(1);
      }
      check(run(plan->child, plan->argv, plan->env));
      // Without a cgroup nothing finds the sandbox's init: wait for it as the floor does.
      while (wait_init && ::waitpid(-1, nullptr, 0) > 0) {
      }
      plan->finish([](const std::vector<pid_t>&) { reap_orphans(); });
    };
  };
  const auto settle = [&pooled] {
    if (auto* pool = pooled.cgroup_pool()) pool->settle(std::chrono::seconds(5));
  };
  const auto bwrap = [&](std::vector<std::string> args) {
    return [&, args] { check(run({}, args, env)); };
  };

  // The namespace chain. Each argv is the previous one plus one thing.
  const SystemLayout& layout = SystemLayout::host();
  const std::string b = "/usr/bin/bwrap";
  std::vector<std::string> flags = {b, "--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
                                    "--unshare-net", "--die-with-parent"};
  std::vector<std::string> root_bind = {"--ro-bind", "/", "/"};
  const auto with = [](std::vector<std::string> a, const std::vector<std::string>& more) {
    a.insert(a.end(), more.begin(), more.end());
    return a;
  };
  const auto cmd = [&](const std::vector<std::string>& a) { return with(a, truth); };
  auto f_cgroupns = with(flags, {"--unshare-cgroup-try"});
  auto f_ours = with(f_cgroupns, {"--hostname", "sandbox", "--cap-drop", "ALL", "--new-session"});
  std::vector<std::string> sys;
  for (const auto& d : layout.ro_dirs) sys.insert(sys.end(), {"--ro-bind", d, d});
  for (const auto& [target, path] : layout.symlinks) sys.insert(sys.end(), {"--symlink", target, path});
  std::vector<std::string> masks;
  for (const auto& f : layout.masked_files) masks.insert(masks.end(), {"--ro-bind", "/dev/null", f});
  for (const auto& d : layout.masked_dirs) masks.insert(masks.end(), {"--tmpfs", d});
  auto m_sys = with(f_ours, sys);
  auto m_masks = with(m_sys, masks);
  auto m_dev = with(m_masks, {"--dev", "/dev"});
  auto m_proc = with(m_dev, {"--proc", "/proc"});
  auto m_tmp = with(m_proc, {"--tmpfs", "/tmp"});
  // Exactly what the daemon runs, on a workspace made once.
  const std::string ws = std::filesystem::temp_directory_path().string() + "/isolation-cost-ws";
  std::filesystem::create_directories(ws);
  BwrapCommand::Options bo;
  bo.workspace = ws;
  bo.env = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + ws};
  auto same = BwrapCommand::build(bo, truth, layout);
  if (!same) {
    std::fprintf(stderr, "build: %s\n", same.error().message.c_str());
    return 1;
  }

  // The cgroup work alone, without exec: what the request path does around the spawn
  // (prepare: group made or taken, limits written, cgroup.procs opened; finish: kill
  // check, rmdir or hand-over), and the child's side (fork, join, rlimits, no_new_privs,
  // _exit) against a bare fork+_exit. Microseconds, far less noisy than a whole spawn.
  const auto fork_exit = [&](const ChildSteps& steps) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      const char* failed = nullptr;
      ::_exit(steps.apply(&failed) == 0 ? 0 : 126);
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    check(status);
  };
  const auto path_only = [&](Isolator& iso) {
    return [&] {
      auto plan = iso.prepare(limits_at(iso, Level::process), {truth, env, "", "path-" + std::to_string(++seq), {}});
      if (!plan) std::exit(1);
      plan->finish();
    };
  };
  auto steps_plan = pooled.prepare(limits_at(pooled, Level::process), {truth, env, "", "steps", {}});
  if (!steps_plan) return 1;
  std::vector<Case> micro = {
      {"cgroup work on the path, in place", path_only(unpooled), {}, {}},
      {"cgroup work on the path, pool", path_only(pooled), settle, {}},
      {"fork+_exit", [&] { fork_exit({}); }, {}, {}},
      {"fork+join+rlimits+nnp+_exit", [&] { fork_exit(steps_plan->child); }, {}, {}},
  };
  for (int r = 0; r < rounds * 5; ++r) {
    for (auto& c : micro) {
      const auto t0 = Clock::now();
      c.once();
      c.ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
      if (c.between) c.between();
    }
  }
  steps_plan->finish();

  std::vector<Case> cases = {
      {"bare fork+exec", [&] { check(run({}, truth, env)); }, {}, {}},
      {"process, cgroup made in place", at_level(unpooled, Level::process), {}, {}},
      {"process, cgroup from the pool", at_level(pooled, Level::process), settle, {}},
      {"bwrap --unshare-all --ro-bind / /", bwrap({b, "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/", "/bin/true"}), {}, {}},
      {" same namespaces, no cgroup ns", bwrap(cmd(with(flags, root_bind))), {}, {}},
      {" + --unshare-cgroup-try", bwrap(cmd(with(f_cgroupns, root_bind))), {}, {}},
      {" + hostname, cap-drop, new-session", bwrap(cmd(with(f_ours, root_bind))), {}, {}},
      {" system dirs instead of /", bwrap(cmd(m_sys)), {}, {}},
      {" + /etc masks", bwrap(cmd(m_masks)), {}, {}},
      {" + --dev /dev", bwrap(cmd(m_dev)), {}, {}},
      {" + --proc /proc", bwrap(cmd(m_proc)), {}, {}},
      {" + --tmpfs /tmp", bwrap(cmd(m_tmp)), {}, {}},
      {" + workspace, env, chdir = same argv", bwrap(*same), {}, {}},
      // What the namespace level waits for and bare bwrap does not: the sandbox's init,
      // still exiting when bwrap returns, is gone before the execution is done.
      {" + its init waited for", [&] {
         check(run({}, *same, env));
         while (::waitpid(-1, nullptr, 0) > 0) {
         }
       }, {}, {}},
      {" + workspace made, removed in place", at_level(no_cgroup, Level::namespace_, true), {}, {}},
      {" + pool: cgroup, workspace rm = namespace", at_level(pooled, Level::namespace_), settle, {}},
      {"namespace, cgroup made in place", at_level(unpooled, Level::namespace_), {}, {}},
  };
  const double load_before = load_average();
  for (auto& c : cases) {  // warm: page cache, the layout probe, the pool's first spares
    c.once();
    if (c.between) c.between();
  }
  for (int r = 0; r < rounds; ++r) {
    for (auto& c : cases) {
      const auto t0 = Clock::now();
      c.once();
      c.ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
      if (c.between) c.between();
      reap_orphans();
    }
  }
  std::filesystem::remove_all(ws);

  std::printf("isolation_cost: %d interleaved rounds of /bin/true (fork+exec launcher), cgroup v%d, "
              "pool of %zu, load average %.2f before / %.2f after\n",
              rounds, pooled.cgroups().version(), pooled.cgroup_pool() ? pooled.cgroup_pool()->size() : size_t{0},
              load_before, load_average());
  // Step: the median over rounds of (this case - its reference) in the same round, paired
  // so that a load that comes and goes between rounds cancels out.
  const auto step = [&](size_t i, size_t ref) {
    std::vector<double> d;
    for (size_t r = 0; r < cases[i].ms.size(); ++r) d.push_back(cases[i].ms[r] - cases[ref].ms[r]);
    return median(d);
  };
  // p10: the least disturbed runs, a second view when the machine is loaded.
  std::printf("  %-38s %9s %14s %8s %10s\n", "case", "median ms", "paired step ms", "p10 ms", "p10 step");
  const auto line = [&](size_t i, size_t ref) {
    const double p10 = quantile(cases[i].ms, 0.1);
    std::printf("  %-38s %9.3f %+14.3f %8.3f %+10.3f\n", cases[i].name.c_str(), median(cases[i].ms),
                i == ref ? 0.0 : step(i, ref), p10, i == ref ? 0.0 : p10 - quantile(cases[ref].ms, 0.1));
  };
  line(0, 0);
  line(1, 0);
  line(2, 0);
  line(3, 3);
  for (size_t i = 4; i < 16; ++i) line(i, i - 1);
  line(16, 14);  // its cgroup step, made in place
  std::printf("  process (pool) - bare fork+exec:           %+.3f ms (in place: %+.3f ms)\n", step(2, 0), step(1, 0));
  std::printf("  namespace (pool) - bare bwrap:             %+.3f ms (in place: %+.3f ms)\n", step(15, 3), step(16, 3));
  std::printf("  namespace (pool) - same argv, init waited: %+.3f ms (the daemon's own work: workspace, cgroup)\n",
              step(15, 13));
  std::printf("  same argv, init waited - same argv:        %+.3f ms (the sandbox's exit, which bare bwrap leaves behind)\n",
              step(13, 12));
  std::printf("  same argv - bare bwrap:                    %+.3f ms, x%.2f (the mounts and flags isolation needs)\n",
              step(12, 3), median(cases[12].ms) / median(cases[3].ms));
  std::printf("  without exec (%d rounds):\n", rounds * 5);
  for (const auto& c : micro) {
    std::printf("  %-38s %9.3f ms median %8.3f p10\n", c.name.c_str(), median(c.ms), quantile(c.ms, 0.1));
  }
  std::vector<double> join;
  for (size_t r = 0; r < micro[3].ms.size(); ++r) join.push_back(micro[3].ms[r] - micro[2].ms[r]);
  std::printf("  the child's steps (join 4 v1 hierarchies, rlimits, nnp): %+.3f ms paired median\n", median(join));
  if (failures != 0) std::printf("  %d runs did not exit 0\n", failures);
  return failures == 0 ? 0 : 1;
}
