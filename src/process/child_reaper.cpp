#include "process/child_reaper.hpp"

#include <sys/prctl.h>
#include <sys/wait.h>

#include <cerrno>
#include <optional>
#include <semaphore>

#include <spdlog/spdlog.h>

namespace execd::process {
namespace {

constexpr std::chrono::milliseconds kReapInterval{1000};

}  // namespace

// One spawn handed to the spawner thread; lives on the caller's stack until `done`.
struct ChildReaper::Job {
  const SpawnOptions* options = nullptr;
  std::optional<core::Result<Child>> result;
  std::binary_semaphore done{0};
};

ChildReaper::ChildReaper(std::shared_ptr<Reactor> reactor, const std::string& ledger_path)
    : reactor_(std::move(reactor)) {
  if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) spdlog::warn("cannot become a child subreaper; orphans go to PID 1");
  if (!ledger_path.empty()) {
    auto ledger = SessionLedger::create(ledger_path);
    if (ledger) {
      state_->ledger = std::make_unique<SessionLedger>(std::move(ledger).value());
    } else {
      spdlog::warn("{}; processes of a crashed daemon cannot be found by the next one", ledger.error().message);
    }
  }
  spawner_ = std::thread([this] { run_spawner(); });
  schedule(*reactor_, state_);
}

ChildReaper::~ChildReaper() {
  {
    std::lock_guard<std::mutex> lock(jobs_mu_);
    stopping_ = true;
  }
  jobs_cv_.notify_all();
  // Children still running get their parent-death signal as this thread ends.
  spawner_.join();
}

void ChildReaper::run_spawner() {
  for (;;) {
    Job* job = nullptr;
    {
      std::unique_lock<std::mutex> lock(jobs_mu_);
      jobs_cv_.wait(lock, [&] { return stopping_ || !jobs_.empty(); });
      if (jobs_.empty()) return;  // stopping, nothing left
      job = jobs_.front();
      jobs_.pop_front();
    }
    try {
      std::lock_guard<std::mutex> lock(state_->mu);
      auto child = process::spawn(*job->options);
      if (child) {
        state_->owned.insert(child->pid);
        if (state_->ledger) state_->ledger->add(child->pid);
      }
      job->result.emplace(std::move(child));
    } catch (const std::exception& e) {
      spdlog::error("spawner: {}", e.what());
      job->result.emplace(core::make_error(core::Errc::internal, std::string("spawn failed: ") + e.what()));
    }
    job->done.release();
  }
}

void ChildReaper::schedule(Reactor& reactor, std::weak_ptr<State> state) {
  // The reactor runs its own timers, so it is alive whenever this fires.
  reactor.after(kReapInterval, [&reactor, state] {
    auto s = state.lock();
    if (!s) return;
    reap_orphans(*s);
    if (s->ledger) s->ledger->prune();
    schedule(reactor, state);
  });
}

core::Result<Child> ChildReaper::spawn(const SpawnOptions& options) {
  Job job;
  job.options = &options;
  {
    std::lock_guard<std::mutex> lock(jobs_mu_);
    jobs_.push_back(&job);
  }
  jobs_cv_.notify_one();
  job.done.acquire();
  return std::move(*job.result);
}

void ChildReaper::disown(pid_t pid) {
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->owned.erase(pid);
  }
  if (state_->ledger) state_->ledger->leader_gone(pid);
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
