// Per-execution cost of `true` at each isolation level, measured in one run so the ratios
// compare like with like: bare fork+exec, the `process` level (a cgroup made, joined,
// removed; rlimits; no_new_privs), bare `bwrap ... /bin/true`, and the `namespace` level
// (Isolator's full bwrap argv plus its cgroup and workspace).
//   build-x/bench/isolation_cost [runs]     (root, for the cgroup parts)
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

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

struct Stats {
  double median_ms;
  double mean_ms;
};

Stats measure(int runs, const std::function<void()>& once) {
  once();  // warm caches (page cache, the bwrap layout probe)
  std::vector<double> ms;
  for (int i = 0; i < runs; ++i) {
    const auto t0 = Clock::now();
    once();
    ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  double sum = 0;
  for (double m : ms) sum += m;
  return {ms[ms.size() / 2], sum / static_cast<double>(ms.size())};
}

}  // namespace

int main(int argc, char** argv) {
  const int runs = argc > 1 ? std::atoi(argv[1]) : 200;
  const std::vector<std::string> env = {"PATH=/usr/bin:/bin"};
  const std::vector<std::string> truth = {"/bin/true"};
  Isolator iso(Isolator::Options{});
  int failures = 0;
  int seq = 0;
  const auto check = [&failures](int status) {
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) ++failures;
  };
  const auto at_level = [&](Level level) {
    return [&, level] {
      Limits l;
      l.level = level;
      l.set(Limit::processes, 100);
      l.set(Limit::memory_mb, 256);
      l.set(Limit::open_files, 256);
      auto plan = iso.prepare(l, {truth, env, "", "bench-" + std::to_string(++seq), {}});
      if (!plan) {
        std::fprintf(stderr, "prepare: %s\n", plan.error().message.c_str());
        std::exit(1);
      }
      check(run(plan->child, plan->argv, plan->env));
      plan->finish();
    };
  };

  const Stats bare = measure(runs, [&] { check(run({}, truth, env)); });
  const Stats process = measure(runs, at_level(Level::process));
  const Stats bwrap = measure(runs, [&] {
    check(run({}, {"/usr/bin/bwrap", "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/", "/bin/true"}, env));
  });
  const Stats ns = measure(runs, at_level(Level::namespace_));

  std::printf("isolation_cost: %d runs each of /bin/true (fork+exec launcher), cgroup v%d\n", runs,
              iso.cgroups().version());
  std::printf("  %-34s median %7.3f ms  mean %7.3f ms\n", "bare fork+exec", bare.median_ms, bare.mean_ms);
  std::printf("  %-34s median %7.3f ms  mean %7.3f ms  (+%.3f ms, x%.2f)\n", "process (cgroup+rlimits+nnp)",
              process.median_ms, process.mean_ms, process.median_ms - bare.median_ms, process.median_ms / bare.median_ms);
  std::printf("  %-34s median %7.3f ms  mean %7.3f ms  (x%.2f of bare)\n", "bare bwrap --unshare-all /bin/true",
              bwrap.median_ms, bwrap.mean_ms, bwrap.median_ms / bare.median_ms);
  std::printf("  %-34s median %7.3f ms  mean %7.3f ms  (+%.3f ms over bare bwrap, x%.2f)\n",
              "namespace (full argv+cgroup+ws)", ns.median_ms, ns.mean_ms, ns.median_ms - bwrap.median_ms,
              ns.median_ms / bwrap.median_ms);
  if (failures != 0) std::printf("  %d runs did not exit 0\n", failures);
  return failures == 0 ? 0 : 1;
}
