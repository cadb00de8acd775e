#include "process/child_reaper.hpp"

#include <sys/prctl.h>
#include <sys/wait.h>

#include <cerrno>

#include <spdlog/spdlog.h>

namespace execd::process {
namespace {

constexpr std::chrono::milliseconds kReapInterval{1000};

}  // namespace

ChildReaper::ChildReaper(std::shared_ptr<Reactor> reactor) : reactor_(std::move(reactor)) {
  if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) spdlog::warn("cannot become a child subreaper; orphans go to PID 1");
  schedule(*reactor_, state_);
}

ChildReaper::~ChildReaper() = default;

void ChildReaper::schedule(Reactor& reactor, std::weak_ptr<State> state) {
  // The reactor runs its own timers, so it is alive whenever this fires.
  reactor.after(kReapInterval, [&reactor, state] {
    auto s = state.lock();
    if (!s) return;
    reap_orphans(*s);
    schedule(reactor, state);
  });
}

core::Result<Child> ChildReaper::spawn(const SpawnOptions& options) {
  std::lock_guard<std::mutex> lock(state_->mu);
  auto child = process::spawn(options);
  if (child) state_->owned.insert(child->pid);
  return child;
}

void ChildReaper::disown(pid_t pid) {
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->owned.erase(pid);
  }
  reap_orphans(*state_);
}

size_t ChildReaper::reap_orphans() { return reap_orphans(*state_); }

size_t ChildReaper::reap_orphans(State& state) {
  std::lock_guard<std::mutex> lock(state.mu);
  size_t reaped = 0;
  // waitid(WNOWAIT) peeks at one exited child without collecting it. An orphan is
  // collected and the pass goes on; an owned child ends the pass, since its owner reaps
  // it next (with its rusage) and calls disown(), which starts another pass.
  for (;;) {
    siginfo_t info{};
    if (waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) != 0 || info.si_pid == 0) break;
    if (state.owned.count(info.si_pid) != 0) break;
    if (waitpid(info.si_pid, nullptr, WNOHANG) > 0) ++reaped;
  }
  return reaped;
}

}  // namespace execd::process
